"""Alias of :mod:`atomsets_tf.evaluation`, where this package now lives (kept so that old imports work)."""

from atomsets_tf.utils.aliases import alias_package

alias_package(__name__, "atomsets_tf.evaluation")
