"""The AtomSets family: how the package loads, runs and retrains :class:`~atomsets_tf.models.AtomSets` models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atomsets_tf.data.io import Table
from atomsets_tf.models.atomsets.features import model_sets
from atomsets_tf.models.atomsets.model import AtomSets
from atomsets_tf.models.base import ModelFamily, load_keras_model, predict_columns, predict_in_chunks, predict_sets

#: Layers of an AtomSets model that ``head`` transfer mode retrains: the MLP after the readout and the output.
HEAD_PREFIXES = ("head_dense", "head_dropout", "output", "target_scaler")


class AtomSetsFamily(ModelFamily):
    """AtomSets heads on compositions or on features tapped from a parent model (``.keras`` files)."""

    name = "atomsets"
    model_class = AtomSets

    def load(self, path: Path) -> AtomSets:
        return load_keras_model(path)

    def from_preset(self, name: str) -> AtomSets:
        return AtomSets.from_preset(name)

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        batch_size = max(batch_size or 256, 256)
        return predict_in_chunks(table, lambda part: predict_sets(model, model_sets(model, part), batch_size))

    def extra_outputs(self, model, table: Table, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """A two-part (zero-inflated) model's ``probability_nonzero``: P(target > 0), its output's second column.

        Its prediction is exactly 0 where this is below 0.5, so the number says how near the call was.
        """
        if getattr(model, "output_kind", None) != "zero-inflated":
            return {}
        batch_size = max(batch_size or 256, 256)
        return {"probability_nonzero": predict_in_chunks(
            table, lambda part: predict_columns(model, model_sets(model, part), [1], batch_size)[:, 0])}

    def tap_names(self, model) -> Sequence[str]:
        return []

    def is_head(self, layer) -> bool:
        return layer.name.startswith(HEAD_PREFIXES)


FAMILY = AtomSetsFamily()
