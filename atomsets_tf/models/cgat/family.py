"""The CGAT family: how the package loads, runs, taps and retrains :class:`CGAT` models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf.data.io import Table
from atomsets_tf.models.base import ModelFamily, check_tap_names, predict_in_chunks, require_structures
from atomsets_tf.models.cgat.data import CGATGraph, GraphRecordBuilder, collate, structures_to_graphs
from atomsets_tf.models.cgat.model import CGAT, load_cgat

#: CGAT's head: the ReZero residual output network (the CGAT paper's "only regression head").
HEAD_LAYER = "output_nn"


class CGATSet:
    """CGAT crystal graphs as a padded-examples collection (the interface of
    :class:`~atomsets_tf.data.pipeline.WeightedSets`)."""

    def __init__(self, graphs: Sequence[CGATGraph]):
        self.graphs = list(graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    def sizes(self) -> np.ndarray:
        return np.array([g.n_atoms for g in self.graphs], dtype=np.int64)

    def subset(self, indices) -> CGATSet:
        return CGATSet([self.graphs[i] for i in indices])

    def padded(self, indices, pad_multiple: int = 8) -> dict[str, np.ndarray]:
        return collate([self.graphs[i] for i in indices], atom_multiple=pad_multiple)

    def tensor_spec(self) -> dict:
        """The padded batch's :data:`~atomsets_tf.models.cgat.data.INPUT_KEYS` as ``tf.TensorSpec``."""
        k = self.graphs[0].nbr_idx.shape[1]
        return {
            "atom_z": tf.TensorSpec((None, None), tf.int32),
            "atom_mask": tf.TensorSpec((None, None), tf.float32),
            "nbr_idx": tf.TensorSpec((None, None, k), tf.int32),
            "nbr_rank": tf.TensorSpec((None, None, k), tf.int32),
            "elem_z": tf.TensorSpec((None, None), tf.int32),
            "elem_weights": tf.TensorSpec((None, None), tf.float32),
        }


class CGATValue(keras.Model):
    """A CGAT's de-normalised value ``[B, 1]`` in target units (with ``with_log_std``, also its log-std in
    target units, ``[B, 2]``, for the ``robust_l1`` loss), or a classifier's probability ``[B, 1]``: what
    retraining fits.

    Args:
        cgat: the :class:`CGAT` whose output it reads.
        with_log_std: also return the log-std column (regression only).

    Raises:
        ValueError: ``with_log_std`` for a classifier (it has no log-std).
    """

    def __init__(self, cgat: CGAT, with_log_std: bool = False, **kwargs):
        super().__init__(**kwargs)
        if with_log_std and cgat.is_classifier:
            raise ValueError("a CGAT classifier has no log-std output")
        self.cgat = cgat
        self.with_log_std = bool(with_log_std)

    def call(self, inputs, training=None):
        out = self.cgat(inputs, training=training)
        if self.cgat.is_classifier:
            return out  # the probability of class 1, [B, 1]
        value = self.cgat.denormalise(out[:, 0:1])
        if not self.with_log_std:
            return value
        # log-std in target units: the loss differs from CGAT's normalised one by a constant only.
        return keras.ops.concatenate([value, out[:, 1:2] + keras.ops.log(self.cgat.target_std)], axis=1)


class CGATFamily(ModelFamily):
    """The Keras port of CGAT: PyTorch Lightning ``.ckpt`` files and ``.keras`` files."""

    name = "cgat"
    model_class = CGAT
    suffixes = (".ckpt",)

    def load(self, path: Path) -> CGAT:
        return load_cgat(path)

    def from_preset(self, name: str) -> CGAT:
        return CGAT.from_preset(name)

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        batch_size = batch_size or 32
        if table.prepared is not None:
            return predict_in_chunks(table, lambda part: model.predict_structures(
                self.prepared_examples(model, part).graphs, batch_size=batch_size))
        require_structures(table, "a CGAT model")
        return np.asarray(model.predict_structures(table.inputs, batch_size=batch_size, progress=progress))

    def tap_names(self, model) -> list[str]:
        return list(model.tap_names())

    def tap_table(self, model, table: Table, names: Sequence[str], batch_size: int | None = None,
                  progress: bool = False) -> dict:
        batch_size = batch_size or 32
        check_tap_names(names, self.tap_names(model))
        if table.prepared is not None:
            return model.tap(self.prepared_examples(model, table).graphs, list(names), batch_size=batch_size)
        require_structures(table, "tapping")
        return model.tap(table.inputs, list(names), batch_size=batch_size)

    def is_head(self, layer) -> bool:
        return layer.name == HEAD_LAYER

    def sets(self, model: CGAT, table: Table, *, stream_above: int | None = None) -> CGATSet:
        """The crystal graphs of ``table``'s structures, built with ``model``'s graph settings and element
        embedding (or read from the prepared dataset the table comes from, streamed above ``stream_above``
        entries), as a padded-examples collection."""
        if table.prepared is not None:
            return self.prepared_sets(model, table, stream_above=stream_above)
        return CGATSet(structures_to_graphs(table.inputs, model.element_embedding(), model.radius,
                                            model.neighbor_number, ids=table.ids))

    def record_builder(self, model: CGAT) -> GraphRecordBuilder:
        return GraphRecordBuilder(model.radius, model.neighbor_number, tuple(model.element_embedding().symbols))

    def sets_from_records(self, model: CGAT, records) -> CGATSet:
        return CGATSet([CGATGraph.from_record(r) for r in records])


FAMILY = CGATFamily()
