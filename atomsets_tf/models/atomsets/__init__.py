"""The AtomSets family: the AtomSets head (:class:`AtomSets`) and the features it reads from a parent model.

``ZOO_ROWS`` are the model names it declares (plain data: reading them imports no TensorFlow); the names below are
imported on first use (PEP 562).
"""

from __future__ import annotations

from atomsets_tf.models.registry import ZooEntry
from atomsets_tf.utils.aliases import lazy_exports


def _structural(name: str, tap: str, use: str) -> ZooEntry:
    return ZooEntry(name, "atomsets", "structure", tap, use, fit=True, grid="atomsets" if use == "atom" else "mlp")


#: The AtomSets models of the zoo (:mod:`~atomsets_tf.models.registry`).
ZOO_ROWS: tuple[ZooEntry, ...] = (
    ZooEntry("atomsets", "atomsets", "composition", fit=True, grid="atomsets"),
    ZooEntry("atomsets-v0", "atomsets", "composition", "V0", "atom", fit=True, grid="atomsets"),
    _structural("atomsets-v1", "V1", "atom"),
    _structural("atomsets-v2", "V2", "atom"),
    _structural("atomsets-v3", "V3", "atom"),
    _structural("mlp-f", "f", "vector"),
    _structural("mlp-u1", "u1", "vector"),
    _structural("mlp-u2", "u2", "vector"),
    _structural("mlp-u3", "u3", "vector"),
    _structural("mlp-v_r", "v_r", "vector"),
    _structural("mlp-v0-stats", "V0", "stats"),
    ZooEntry("atomsets-head", "atomsets", "either", mode="head"),
    ZooEntry("atomsets-full", "atomsets", "either", mode="full"),
)
#: Structural AtomSets models: name -> (the parent MEGNet's tap, how it is used).
STRUCTURAL_MODELS: dict[str, tuple[str, str]] = {row.name: (row.tap, row.use) for row in ZOO_ROWS
                                                 if row.fit and row.inputs == "structure"}

_EXPORTS = {"AtomSets": "atomsets_tf.models.atomsets.model"}

__all__ = ["STRUCTURAL_MODELS", "ZOO_ROWS", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
