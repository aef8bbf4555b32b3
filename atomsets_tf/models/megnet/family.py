"""The MEGNet family: how the package loads, runs, taps and retrains :class:`MEGNet` models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from atomsets_tf.data.io import Table
from atomsets_tf.models.base import ModelFamily, predict_in_chunks, require_structures
from atomsets_tf.models.megnet.graph import (
    GraphRecordBuilder,
    MEGNetGraph,
    batch_graphs,
    graph_from_record,
    input_shapes,
)
from atomsets_tf.models.megnet.model import KERAS_MODEL_NAME, MEGNet

#: Layers of a MEGNet that ``head`` transfer mode retrains: the final MLP, a new classifier, the target scaler.
HEAD_PREFIXES = ("readout_", "classifier", "target_scaler")


class GraphSet:
    """MEGNet graphs as a padded-examples collection (the interface of
    :class:`~atomsets_tf.data.pipeline.WeightedSets`), for training and :func:`~atomsets_tf.models.base.predict_sets`."""

    def __init__(self, graphs: Sequence[MEGNetGraph], n_state: int = 2):
        self.graphs = list(graphs)
        self.n_state = int(n_state)

    def __len__(self) -> int:
        return len(self.graphs)

    def sizes(self) -> np.ndarray:
        return np.array([g.n_bonds for g in self.graphs], dtype=np.int64)

    def subset(self, indices) -> GraphSet:
        return GraphSet([self.graphs[i] for i in indices], self.n_state)

    def padded(self, indices, pad_multiple: int = 8) -> dict[str, np.ndarray]:
        return batch_graphs([self.graphs[i] for i in indices], pad_multiple)

    def tensor_spec(self) -> dict:
        return {name: tf.TensorSpec((None, *shape), dtype) for name, (dtype, shape) in input_shapes(self.n_state).items()}


class MEGNetFamily(ModelFamily):
    """The published MEGNet checkpoints (megnet ``.hdf5`` + ``.hdf5.json``) and MEGNets saved as ``.keras``."""

    name = "megnet"
    model_class = MEGNet
    suffixes = (".hdf5", ".h5")

    def recognises_keras(self, config: dict) -> bool:
        # MEGNet.save writes the Keras functional model itself (its class_name is "Functional"), named by the
        # file's own config: config.name is KERAS_MODEL_NAME.
        inner = config.get("config")
        return config.get("class_name") == "Functional" and isinstance(inner, dict) and \
            inner.get("name") == KERAS_MODEL_NAME

    def load(self, path: Path) -> MEGNet:
        return MEGNet.from_checkpoint(path) if path.suffix.lower() in self.suffixes else MEGNet.load(path)

    def from_preset(self, name: str) -> MEGNet:
        return MEGNet.from_preset(name)

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        if table.prepared is not None:
            return predict_in_chunks(table, lambda part: model.run_graphs(
                self.prepared_examples(model, part).graphs, ["prediction"], batch_size)["prediction"][:, 0])
        require_structures(table, "a MEGNet model")
        return np.asarray(model.predict(table.inputs, batch_size=batch_size, progress=progress, ids=table.ids))

    def tap_names(self, model) -> list[str]:
        return list(model.tap_names)

    def tap_table(self, model, table: Table, names: Sequence[str], batch_size: int | None = None,
                  progress: bool = False) -> dict:
        if table.prepared is not None:
            return model.run_graphs(self.prepared_examples(model, table).graphs, list(names), batch_size, progress)
        require_structures(table, "tapping")
        return model.tap(table.inputs, list(names), batch_size=batch_size, progress=progress, ids=table.ids)

    def describe(self, model) -> str:
        return model.describe()

    def is_head(self, layer) -> bool:
        return layer.name.startswith(HEAD_PREFIXES)

    def sets(self, model: MEGNet, table: Table, *, stream_above: int | None = None) -> GraphSet:
        """The graphs of ``table``'s structures, built with ``model``'s cutoff (or read from the prepared dataset
        the table comes from, streamed above ``stream_above`` entries), as a padded-examples collection."""
        if table.prepared is not None:
            return self.prepared_sets(model, table, stream_above=stream_above)
        return GraphSet(model.graphs(table.inputs, table.ids), model.n_state)

    def record_builder(self, model: MEGNet) -> GraphRecordBuilder:
        return GraphRecordBuilder(model.cutoff, model.n_vocab - 1, model.n_state)

    def sets_from_records(self, model: MEGNet, records) -> GraphSet:
        return GraphSet([graph_from_record(r) for r in records], model.n_state)


FAMILY = MEGNetFamily()
