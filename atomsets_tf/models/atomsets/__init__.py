"""The AtomSets family: the AtomSets head (:class:`AtomSets`) and the features it reads from a parent model."""

from atomsets_tf.models.atomsets.model import AtomSets

__all__ = ["AtomSets"]
