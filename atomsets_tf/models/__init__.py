"""Keras models only, one folder per family, and the interface and registry they share.

* :class:`AtomSets` (:mod:`.atomsets`): the AtomSets head (per-atom MLP, readout, MLP, output);
* :class:`MEGNet` (:mod:`.megnet`): MEGNet in Keras 3, reading the published checkpoints;
* :class:`CGAT` (:mod:`.cgat`): the Keras port of CGAT;
* :mod:`.base`: the :class:`~.base.ModelFamily` interface each family implements;
* :mod:`.registry`: the one model zoo (names, families, feature levels);
* :mod:`.loading`: :func:`load_model`, :func:`predict_table`, :func:`tap_table` for any of them.

The names below are imported on first use (PEP 562), so that reading the registry
(the command line's ``--help``) imports no TensorFlow.
"""

from __future__ import annotations

from atomsets_tf.utils.aliases import lazy_exports

_EXPORTS = {
    "AtomSets": "atomsets_tf.models.atomsets.model",
    "MEGNet": "atomsets_tf.models.megnet.model",
    "CGAT": "atomsets_tf.models.cgat.model",
    "load_model": "atomsets_tf.models.loading",
    "predict_table": "atomsets_tf.models.loading",
    "tap_table": "atomsets_tf.models.loading",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
