"""The MEGNet family: how the package loads, runs, taps and retrains :class:`MEGNet` models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf.data.io import Table
from atomsets_tf.models.base import ModelFamily, Retrainable, require_structures
from atomsets_tf.models.megnet import ZOO_ROWS
from atomsets_tf.models.megnet.graph import (
    GraphRecordBuilder,
    MEGNetGraph,
    batch_graphs,
    graph_from_record,
    input_shapes,
)
from atomsets_tf.models.megnet.model import KERAS_MODEL_NAME, MEGNet, head_layers
from atomsets_tf.models.registry import DEFAULT_SOURCE, register_family


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
    zoo = ZOO_ROWS
    default_batch_size = None  # batches planned by cost (plan_batches)

    def recognises_keras(self, config: dict) -> bool:
        # A MEGNet saved as itself names its registered class; a file of the earlier layout holds its bare
        # functional network (class_name "Functional"), named KERAS_MODEL_NAME in the file's own config.
        inner = config.get("config")
        return super().recognises_keras(config) or (
            config.get("class_name") == "Functional" and isinstance(inner, dict) and inner.get("name") == KERAS_MODEL_NAME)

    def load(self, path: Path) -> MEGNet:
        return MEGNet.from_checkpoint(path) if path.suffix.lower() in self.suffixes else MEGNet.load(path)

    def from_preset(self, name: str) -> MEGNet:
        return MEGNet.from_preset(name)

    def default_parent(self, row, features_from: str | None):
        return features_from or DEFAULT_SOURCE  # the AtomSets paper's parent

    def examples_in_memory(self, source: MEGNet, table: Table) -> GraphSet:
        """The graphs of ``table``'s structures, built with ``source``'s cutoff."""
        require_structures(table, "a MEGNet model")
        return GraphSet(source.graphs(table.inputs, table.ids), source.n_state)

    def record_builder(self, source: MEGNet) -> GraphRecordBuilder:
        return GraphRecordBuilder(source.cutoff, source.n_vocab - 1, source.n_state)

    def examples_from_records(self, source: MEGNet, records) -> GraphSet:
        return GraphSet([graph_from_record(r) for r in records], source.n_state)

    def predict_examples(self, model: MEGNet, examples: GraphSet, batch_size: int | None,
                         progress: bool = False) -> np.ndarray:
        out = model.run_graphs(examples.graphs, ["prediction"], batch_size, progress)["prediction"]
        return out[:, 0] if out.shape[1] == 1 else out

    def tap_names(self, model) -> list[str]:
        return list(model.tap_names)

    def tap_examples(self, model: MEGNet, examples: GraphSet, names: Sequence[str], batch_size: int | None,
                     progress: bool = False) -> dict:
        return model.run_graphs(examples.graphs, list(names), batch_size, progress)

    def describe(self, model) -> str:
        return model.describe()

    def transfer_copy(self, parent: MEGNet, task_type: str, train_targets: np.ndarray, mode: str,
                      with_log_std: bool = False) -> Retrainable:
        km = keras.models.clone_model(parent.keras_model)
        if mode != "scratch":
            km.set_weights(parent.keras_model.get_weights())
        if task_type == "regression":
            scaler = km.get_layer("target_scaler")
            scaler.mean = float(np.mean(train_targets))
            scaler.std, scaler.is_intensive = float(np.std(train_targets)) or 1.0, True
        else:
            # A new output for a new kind of target: a sigmoid on the final MLP's last hidden layer.
            hidden = [name for name in km.output if name.startswith("readout_")][-1]
            logit = keras.layers.Dense(1, name="classifier", dtype="float32")(km.output[hidden])
            probability = keras.layers.Activation("sigmoid", name="classifier_sigmoid", dtype="float32")(logit)
            km = keras.Model(km.input, {**km.output, "raw_output": logit, "prediction": probability}, name=km.name)
        retrained = MEGNet(km, parent.cutoff, source=f"retrained from {parent.source}",
                           metadata={**parent.metadata, "retrained_mode": mode, "task_type": task_type})
        head = head_layers(km)

        def set_trainable(mode_name: str) -> None:  # the network's own layers: the wrapper holds it whole
            heads = {id(layer) for layer in head}
            for layer in km.layers:
                layer.trainable = mode_name != "head" or id(layer) in heads

        return Retrainable(retrained, head, None, set_trainable)


FAMILY = register_family(MEGNetFamily())
