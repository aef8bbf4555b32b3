"""MEGNet in Keras 3: the published megnet checkpoints, megnet's crystal graphs, predictions and feature taps.

* :class:`MEGNet` (``from_checkpoint``, ``from_preset``, ``load``; ``predict``, ``tap``,
  ``describe``, ``embedding_table``, ``keras_model``);
* :func:`load_megnet`: a path or a preset name -> :class:`MEGNet`;
* :func:`structure_to_graph`, :func:`batch_graphs`: megnet's ``CrystalGraph`` and the padded layout;
* :func:`read_checkpoint`: the h5py/JSON checkpoint reader (no megnet, no tf-keras).
"""

from atomsets_tf.models.megnet.checkpoint import read_checkpoint
from atomsets_tf.models.megnet.graph import IsolatedAtomWarning, MEGNetGraph, batch_graphs, structure_to_graph
from atomsets_tf.models.megnet.layers import ExtensiveTargetScaler, GaussianExpansion, MEGNetBlock, MEGNetSet2Set
from atomsets_tf.models.megnet.model import MEGNet, load_megnet

__all__ = [
    "MEGNet",
    "load_megnet",
    "read_checkpoint",
    "structure_to_graph",
    "batch_graphs",
    "MEGNetGraph",
    "IsolatedAtomWarning",
    "GaussianExpansion",
    "MEGNetBlock",
    "MEGNetSet2Set",
    "ExtensiveTargetScaler",
]
