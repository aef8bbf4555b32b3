"""Alias of :mod:`atomsets_tf.workflows.retrain`, where this module now lives (kept so that old imports work)."""

from atomsets_tf.utils.aliases import alias_module

alias_module(__name__, "atomsets_tf.workflows.retrain")
