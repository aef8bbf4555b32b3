"""The CGAT family: how the package loads, runs, taps and retrains :class:`CGAT` models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf.data.io import Table
from atomsets_tf.models.base import ModelFamily, Retrainable, require_structures
from atomsets_tf.models.cgat import ZOO_ROWS
from atomsets_tf.models.cgat.data import CGATGraph, GraphRecordBuilder, collate, structures_to_graphs
from atomsets_tf.models.cgat.model import CGAT, load_cgat
from atomsets_tf.models.registry import register_family


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


#: The CGAT that ``cgat`` trains from scratch: the paper's layout (ReZero, vector attention, hypernetwork updates),
#: narrowed to train on a CPU and to save in a few MB (about 0.8M parameters; the paper's default has 62M).
CGAT_BENCHMARK_CONFIG = {
    "elem_fea_len": 32,
    "n_graph": 3,
    "nbr_embedding_size": 32,
    "msg_heads": 4,
    "n_graph_roost": 2,
    "out_hidden": (128, 64, 32),
}


class CGATFamily(ModelFamily):
    """The Keras port of CGAT: PyTorch Lightning ``.ckpt`` files and ``.keras`` files."""

    name = "cgat"
    model_class = CGAT
    suffixes = (".ckpt",)
    zoo = ZOO_ROWS
    default_batch_size = 32
    losses = ("mae", "mse", "robust_l1")
    mixed_precision = False  # its layers mix float32 weights with the policy's compute dtype
    retrains_as_ensemble = False  # it retrains as a CGATValue around the CGAT, not as the CGAT itself

    def load(self, path: Path) -> CGAT:
        return load_cgat(path)

    def from_preset(self, name: str) -> CGAT:
        return CGAT.from_preset(name)

    def default_parent(self, row, features_from: str | None):
        return CGAT(**CGAT_BENCHMARK_CONFIG) if row.mode == "scratch" else features_from

    def examples_in_memory(self, source: CGAT, table: Table) -> CGATSet:
        """The crystal graphs of ``table``'s structures, built with ``source``'s graph settings and element
        embedding."""
        require_structures(table, "a CGAT model")
        return CGATSet(structures_to_graphs(table.inputs, source.element_embedding(), source.radius,
                                            source.neighbor_number, ids=table.ids))

    def record_builder(self, source: CGAT) -> GraphRecordBuilder:
        return GraphRecordBuilder(source.radius, source.neighbor_number, tuple(source.element_embedding().symbols))

    def examples_from_records(self, source: CGAT, records) -> CGATSet:
        return CGATSet([CGATGraph.from_record(r) for r in records])

    def predict_examples(self, model: CGAT, examples: CGATSet, batch_size: int, progress: bool = False) -> np.ndarray:
        return np.asarray(model.predict_structures(examples.graphs, batch_size=batch_size, progress=progress))

    def tap_names(self, model) -> list[str]:
        return list(model.tap_names())

    def tap_examples(self, model: CGAT, examples: CGATSet, names: Sequence[str], batch_size: int,
                     progress: bool = False) -> dict:
        return model.tap(examples.graphs, list(names), batch_size=batch_size)

    def transfer_copy(self, parent: CGAT, task_type: str, train_targets: np.ndarray, mode: str,
                      with_log_std: bool = False) -> Retrainable:
        same_task = parent.task_type == task_type
        config = {**parent.get_config(), "task_type": task_type}
        if not same_task:
            config.update(target_mean=0.0, target_std=1.0)
        cgat = CGAT.from_config(config)
        if mode != "scratch" and same_task:
            cgat.set_weights(parent.get_weights())
        elif mode != "scratch":
            # A new output for a new kind of target: the parent's head is kept, its output layer is fresh.
            cgat.copy_weights_below_output(parent)
        cgat.set_element_embedding(parent.element_embedding())  # the inputs it looks up, also from scratch
        if task_type == "regression":
            cgat.fit_normalisation(train_targets)
        net = CGATValue(cgat, with_log_std and task_type == "regression", name="cgat_value")
        return Retrainable(net, [cgat.head], lambda _net, path: cgat.save(path),
                           lambda mode_name: cgat.freeze_graph_embedding(mode_name == "head"))


FAMILY = register_family(CGATFamily())
