"""Alias of :mod:`atomsets_tf.models.atomsets.features`, where this module now lives (kept so that old imports work)."""

from atomsets_tf.utils.aliases import alias_module

alias_module(__name__, "atomsets_tf.models.atomsets.features")
