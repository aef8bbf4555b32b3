"""MEGNet in Keras 3: the published megnet checkpoints, megnet's crystal graphs, predictions and feature taps.

* :class:`MEGNet` (``from_checkpoint``, ``from_preset``, ``load``; ``predict``, ``tap``,
  ``describe``, ``embedding_table``, ``keras_model``);
* :func:`load_megnet`: a path or a preset name -> :class:`MEGNet`;
* :func:`structure_to_graph`, :func:`batch_graphs`: megnet's ``CrystalGraph`` and the padded layout;
* :func:`read_checkpoint`: the h5py/JSON checkpoint reader (no megnet, no tf-keras).

The names are imported on first use (PEP 562): the graph builders' modules import no TensorFlow, so
that ``atomsets-tf prepare --workers N`` starts light worker processes.
"""

from __future__ import annotations

from atomsets_tf.models.registry import ZooEntry
from atomsets_tf.utils.aliases import lazy_exports

#: The MEGNet models of the zoo (:mod:`~atomsets_tf.models.registry`): trained from scratch with
#: a parent's architecture, or a pretrained parent retrained.
ZOO_ROWS: tuple[ZooEntry, ...] = (
    ZooEntry("megnet", "megnet", "structure"),
    ZooEntry("megnet-head", "megnet", "structure", mode="head"),
    ZooEntry("megnet-full", "megnet", "structure", mode="full"),
)

_EXPORTS = {
    "MEGNet": "atomsets_tf.models.megnet.model",
    "load_megnet": "atomsets_tf.models.megnet.model",
    "read_checkpoint": "atomsets_tf.models.megnet.checkpoint",
    "structure_to_graph": "atomsets_tf.models.megnet.graph",
    "batch_graphs": "atomsets_tf.models.megnet.graph",
    "MEGNetGraph": "atomsets_tf.models.megnet.graph",
    "IsolatedAtomWarning": "atomsets_tf.models.megnet.graph",
    "GaussianExpansion": "atomsets_tf.models.megnet.layers",
    "MEGNetBlock": "atomsets_tf.models.megnet.layers",
    "MEGNetSet2Set": "atomsets_tf.models.megnet.layers",
    "ExtensiveTargetScaler": "atomsets_tf.models.megnet.layers",
}

__all__ = ["ZOO_ROWS", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
