"""Models of atomsets-tf.

* :class:`AtomSets`: the AtomSets head (per-atom MLP, readout, MLP, output).
"""

from atomsets_tf.models.atomsets import AtomSets

__all__ = ["AtomSets"]
