"""The AtomSets family: how the package builds, loads, runs and retrains :class:`~atomsets_tf.models.AtomSets`
models."""

from __future__ import annotations

import numpy as np

from atomsets_tf.data.io import Table
from atomsets_tf.data.targets import positive_stats
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.atomsets import STRUCTURAL_MODELS, ZOO_ROWS
from atomsets_tf.models.atomsets.builder import build_model, element_table_of, featurize
from atomsets_tf.models.atomsets.features import (
    TapRecordBuilder,
    composition_sets,
    structural_sets,
    tap_records_to_sets,
)
from atomsets_tf.models.atomsets.model import AtomSets
from atomsets_tf.models.base import (
    BuildRequest,
    ModelFamily,
    Retrainable,
    predict_columns,
    predict_in_chunks,
    predict_sets,
)
from atomsets_tf.models.registry import DEFAULT_SOURCE, register_family


def _feature_source(source) -> tuple[str, str] | None:
    """The structural model and parent MEGNet that ``source`` (a model or a request) reads taps of, else ``None``."""
    if isinstance(source, BuildRequest):
        return (source.model, source.features_from or DEFAULT_SOURCE) if source.model in STRUCTURAL_MODELS else None
    if source.input_name != "features":
        return None
    recorded = source.feature_source
    if not recorded:
        raise AtomSetsError("this AtomSets model takes precomputed features and does not record their source")
    return recorded["model"], recorded["source"]


class AtomSetsFamily(ModelFamily):
    """AtomSets heads on compositions or on features tapped from a parent model (``.keras`` files)."""

    name = "atomsets"
    model_class = AtomSets
    zoo = ZOO_ROWS
    default_batch_size = 256

    def from_preset(self, name: str) -> AtomSets:
        return AtomSets.from_preset(name)

    def build(self, request: BuildRequest, examples) -> AtomSets:
        return build_model(request.model, request.task_type, request.train_targets,
                           element_table_of(request.model, request.features_from, request.element_features),
                           request.config, examples, request.features_from, request.output, request.name)

    def examples_in_memory(self, source, table: Table):
        tapped = _feature_source(source)
        if tapped is not None:
            return structural_sets(*tapped, table, getattr(source, "progress", False))
        if isinstance(source, BuildRequest):
            return featurize(table, source.model, source.features_from, source.progress, source.element_features)[0]
        return composition_sets(table, model=source)

    def record_builder(self, source) -> TapRecordBuilder:
        tapped = _feature_source(source)
        if tapped is None:
            raise AtomSetsError("compositional AtomSets models read compositions, not prepared datasets: give them "
                                "the data file it was prepared from")
        return TapRecordBuilder(*tapped)

    def examples_from_records(self, source, records):
        return tap_records_to_sets(records)

    def predict_examples(self, model, examples, batch_size: int, progress: bool = False) -> np.ndarray:
        return predict_sets(model, examples, max(batch_size, self.default_batch_size))

    def extra_outputs(self, model, table: Table, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """A two-part (zero-inflated) model's ``probability_nonzero``: P(target > 0), its output's second column.

        Its prediction is exactly 0 where this is below 0.5, so the number says how near the call was.
        """
        if getattr(model, "output_kind", None) != "zero-inflated":
            return {}
        batch_size = max(batch_size or 0, self.default_batch_size)
        return {"probability_nonzero": predict_in_chunks(table, lambda part: predict_columns(
            model, self.examples(model, part, stream=False), [1], batch_size)[:, 0])}

    def transfer_copy(self, parent: AtomSets, task_type: str, train_targets: np.ndarray, mode: str,
                      with_log_std: bool = False) -> Retrainable:
        config = parent.get_config()
        same_task = config["task_type"] == task_type
        config.update(task_type=task_type, name=f"{parent.name}_retrained")
        if task_type == "regression":
            config.update(target_mean=float(np.mean(train_targets)), target_std=float(np.std(train_targets)) or 1.0)
            if config.get("output") == "zero-inflated" and (train_targets > 0).sum() > 1:
                positive_mean, positive_std = positive_stats(train_targets)
                config.update(positive_mean=positive_mean, positive_std=positive_std)
        else:
            config.update(output="linear")
        model = AtomSets.from_config(config)
        if mode != "scratch":
            for layer in model.layers:
                if layer.name == "output" and not same_task:
                    continue  # a new target kind gets a new output layer
                try:
                    source_layer = parent.get_layer(layer.name)
                except ValueError:
                    continue
                if [w.shape for w in source_layer.get_weights()] == [w.shape for w in layer.get_weights()]:
                    layer.set_weights(source_layer.get_weights())
        return Retrainable(model, model.head_layers())


FAMILY = register_family(AtomSetsFamily())
