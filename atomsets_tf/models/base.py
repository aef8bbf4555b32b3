"""The model interface every family implements, and the inference helpers the families share.

A *family* is a kind of model (AtomSets, MEGNet, CGAT). Its :class:`ModelFamily`
object is the one place that knows how to recognise, load, run, tap and retrain
its models; everything above the models layer (workflows, evaluation, the CLI)
goes through it, found by :func:`~atomsets_tf.models.registry.family_of` or
:func:`~atomsets_tf.models.registry.family`, never by class or layer names.
"""

from __future__ import annotations

import abc
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

import atomsets_tf.layers  # noqa: F401  (registers the serialisable layers and optimizers a saved model may hold)
from atomsets_tf import presets
from atomsets_tf.data.io import Table
from atomsets_tf.data.padding import size_bucketed_batches
from atomsets_tf.data.streaming import StreamingSets, stream_threshold
from atomsets_tf.errors import AtomSetsError, CheckpointError, UnknownTapError
from atomsets_tf.models.registry import families


@dataclass
class BuildRequest:
    """What :func:`~atomsets_tf.workflows.fit.fit` asks a family to build from scratch: one model of the zoo.

    Attributes:
        model: the zoo name (``--model``).
        task_type: ``"regression"`` or ``"classification"``.
        train_targets: the training part's targets (to standardise on).
        config: the hyperparameters (:class:`~atomsets_tf.workflows.fit.ModelConfig`: read by attribute).
        output: the regression output kind (:data:`~atomsets_tf.data.targets.OUTPUT_KINDS`).
        features_from: the parent model the examples are tapped from, if any.
        element_features: the element-feature sources, if any.
        progress: whether featurising may show a progress bar.
        name: the Keras name of the model built (``None``: from :attr:`model`; an ensemble names its members).
    """

    model: str
    task_type: str = "regression"
    train_targets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    config: Any = None
    output: str = "linear"
    features_from: str | None = None
    element_features: list[str] | None = None
    progress: bool = False
    name: str | None = None


@dataclass
class Retrainable:
    """A copy of a parent, ready to retrain (what :meth:`ModelFamily.transfer_copy` returns).

    Attributes:
        net: the Keras model training fits: a padded batch -> ``[B, 1]`` in target units (``[B, 2]`` with a
            log-std for ``robust_l1``).
        head: the layers of ``net`` that ``head`` transfer mode retrains (the rest is the backbone).
        save: writes the retrained model to a path (``None``: ``net.save``).
        set_trainable: sets which parts train in a transfer mode itself, called with the mode's name (``None``:
            every layer of ``net`` trains, in ``head`` mode only the head's).
    """

    net: Any
    head: Sequence = ()
    save: Callable | None = None
    set_trainable: Callable[[str], None] | None = None


class ModelFamily(abc.ABC):
    """The whole contract of a model family: one instance per family, registered
    (:func:`~atomsets_tf.models.registry.register_family`); everything above the models layer goes through it.

    A family builds its models (:meth:`build`, from scratch; :meth:`from_preset`, :meth:`load`), reads its
    examples from a table in memory or from a prepared dataset (:meth:`examples`: that branch is written here
    once; a family gives :meth:`examples_in_memory`, and for ``prepare`` :meth:`record_builder` and
    :meth:`examples_from_records`), predicts and taps, splits a parent into backbone and head for transfer
    (:meth:`transfer_copy`), and describes its models.

    Attributes:
        name: the family's name in :mod:`~atomsets_tf.models.registry` (``"megnet"``, ...).
        model_class: the (registered, serialisable) class of its models.
        suffixes: file suffixes it reads besides ``.keras`` (e.g. ``(".hdf5",)``).
        zoo: the model names it declares (:class:`~atomsets_tf.models.registry.ZooEntry`).
        default_batch_size: entries per batch for inference when none is given.
        task_types: the task types it trains.
        losses: the regression losses it trains with (``robust_l1`` needs a log-std output).
        mixed_precision: whether it trains under a mixed-precision dtype policy.
        retrains_as_ensemble: whether K retrained copies of a parent form an ensemble (``retrain --ensemble``):
            the retrained net is itself the family's registered model.
    """

    name: str = ""
    model_class: type = object
    suffixes: tuple[str, ...] = ()
    zoo: tuple = ()
    default_batch_size: int = 256
    task_types: tuple[str, ...] = ("regression", "classification")
    losses: tuple[str, ...] = ("mae", "mse")
    mixed_precision: bool = True
    retrains_as_ensemble: bool = True

    # -- recognising and loading ---------------------------------------------------------------------------------

    def owns(self, model) -> bool:
        """Whether ``model`` is one of this family's."""
        return isinstance(model, self.model_class)

    def recognises_keras(self, config: dict) -> bool:
        """Whether a ``.keras`` file whose top-level ``config.json`` is ``config`` holds this family's model: the
        ``registered_name`` it names is :attr:`model_class`'s (read as data: nothing is deserialised)."""
        return config.get("registered_name") == keras.saving.get_registered_name(self.model_class)

    def load(self, path: Path):
        """The model in ``path`` (a ``.keras`` file, or a file with one of :attr:`suffixes`)."""
        return load_keras_model(path)

    def from_preset(self, name: str):
        """The model of the preset ``name`` (a ``.keras`` file of this family's kind)."""
        return load_keras_model(presets.preset_file(name, self.name))

    # -- building from scratch -----------------------------------------------------------------------------------

    def build(self, request: BuildRequest, examples):
        """An untrained model for ``request`` (a zoo row with ``fit``), whose inputs are ``examples``' batches."""
        raise AtomSetsError(f"{self.name} models are not built from scratch by fit: retrain a parent")

    def default_parent(self, row, features_from: str | None):
        """The parent a zoo ``row`` of this family that is retrained (not built by :meth:`build`) starts from, given
        the ``features_from`` the user named (``None``: the user must name one)."""
        return features_from

    # -- examples ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def examples_in_memory(self, source, table: Table):
        """The padded-examples collection (see :class:`~atomsets_tf.data.pipeline.WeightedSets`) of ``table``'s
        entries, featurised in memory for ``source``: a model of this family, or a :class:`BuildRequest`."""

    def record_builder(self, source):
        """The builder of ``source``'s prepared-dataset records (:class:`~atomsets_tf.data.records.RecordBuilder`:
        picklable, free of TensorFlow, carrying the settings the records depend on); ``source`` is a model or a
        :class:`BuildRequest`."""
        raise AtomSetsError(f"{self.name} models read no prepared datasets")

    def examples_from_records(self, source, records: Sequence[dict]):
        """The padded-examples collection of prepared-dataset records (what :meth:`record_builder` wrote)."""
        raise AtomSetsError(f"{self.name} models read no prepared datasets")

    def examples(self, source, table: Table, stream: bool = True, stream_above: int | None = None):
        """The examples of ``table`` for ``source`` (a model or a :class:`BuildRequest`): featurised in memory, or,
        for a table read from a prepared dataset (``table.prepared``), read from its records after checking that
        they were prepared with ``source``'s settings, into memory or (``stream``, a table of more than
        ``stream_above`` entries: ``TrainingConfig.stream_above``, ``None`` the default) streamed from the shards
        (see :mod:`~atomsets_tf.data.streaming`).

        Raises:
            PreparedDatasetError: the dataset was prepared for another kind of model or with other settings.
        """
        if table.prepared is None:
            return self.examples_in_memory(source, table)
        builder = self.record_builder(source)
        table.prepared.check_compatible(builder.kind, builder.settings, what=getattr(builder, "label", self.name))
        to_examples = lambda records: self.examples_from_records(source, records)  # noqa: E731
        if stream:
            return read_prepared(table, to_examples, stream_above=stream_above)
        return to_examples(table.prepared.records(table.inputs))

    # -- predictions and taps ------------------------------------------------------------------------------------

    def predict_examples(self, model, examples, batch_size: int, progress: bool = False) -> np.ndarray:
        """Predictions (target units) of ``model`` for every example, in order (column 0 of its output)."""
        return predict_sets(model, examples, batch_size)

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Predictions (target units) for every entry of ``table``, in order: a prepared table part by part."""
        batch_size = batch_size or self.default_batch_size
        return predict_in_chunks(table, lambda part: self.predict_examples(
            model, self.examples(model, part, stream=False), batch_size, progress))

    def predict_with_std(self, model, table: Table, batch_size: int | None = None,
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and their standard deviation (``None`` for a model that gives no uncertainty)."""
        return self.predict_table(model, table, batch_size, progress), None

    def extra_outputs(self, model, table: Table, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Further per-entry outputs beside the prediction, by column name (a two-part output's
        ``probability_nonzero``); none unless the family has some."""
        return {}

    def tap_names(self, model) -> list[str]:
        """The names ``model`` can be tapped at (empty when it has no taps)."""
        return []

    def tap_examples(self, model, examples, names: Sequence[str], batch_size: int, progress: bool = False) -> dict:
        """Intermediate features of ``model`` at ``names`` for every example (see the family's ``tap``)."""
        raise AtomSetsError(f"{self.name} models have no taps")

    def tap_table(self, model, table: Table, names: Sequence[str], batch_size: int | None = None,
                  progress: bool = False) -> dict:
        """Intermediate features of ``model`` at ``names`` for ``table`` (checked against :meth:`tap_names`)."""
        if not self.tap_names(model):
            raise AtomSetsError(f"{self.name} models have no taps")
        check_tap_names(names, self.tap_names(model))
        return self.tap_examples(model, self.examples(model, table, stream=False), list(names),
                                 batch_size or self.default_batch_size, progress)

    def describe(self, model) -> str:
        """A text description: the model's blocks and, where it has them, its tap names."""
        lines: list[str] = []
        model.summary(print_fn=lambda line, **_: lines.append(line))
        taps = self.tap_names(model)
        if taps:
            lines.append("taps: " + ", ".join(taps))
        return "\n".join(lines)

    # -- transfer ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def transfer_copy(self, parent, task_type: str, train_targets: np.ndarray, mode: str,
                      with_log_std: bool = False) -> Retrainable:
        """A copy of ``parent`` to retrain in transfer ``mode`` (``"scratch"``: fresh weights of its architecture;
        ``"head"``, ``"full"``: the parent's weights) on a ``task_type`` target, standardised on
        ``train_targets``, with its explicit backbone/head split; a new kind of target gets a fresh output.
        ``with_log_std``: also a log-std output (the ``robust_l1`` loss). Called inside the strategy's scope."""

    def check_training(self, training, what: str | None = None) -> None:
        """Refuse training settings (a :class:`~atomsets_tf.training.trainer.TrainingConfig`) the family cannot
        train with: a loss outside :attr:`losses`, a mixed-precision policy; ``what`` names the model."""
        if training.loss not in self.losses:
            raise AtomSetsError(f"the {training.loss} loss needs a model that also predicts a log-std (CGAT), not "
                                f"{what or 'a ' + self.name + ' model'}")
        if training.mixed_precision and not self.mixed_precision:
            raise AtomSetsError(f"{self.name.upper()} does not train under mixed precision "
                                f"({training.mixed_precision}) yet; leave --mixed-precision out")


def downstream_layers(model, start) -> list:
    """The layers of the functional ``model`` that take, directly or through others, the output of its layer
    ``start`` (``start`` excluded), in ``model.layers`` order: how a family names its head by the graph (the layers
    after the readout), not by layer names."""
    members = {id(layer) for layer in model.layers}
    seen, frontier = set(), [start]
    while frontier:
        layer = frontier.pop()
        for node in getattr(layer, "_outbound_nodes", ()):
            op = node.operation
            if id(op) in members and id(op) not in seen:
                seen.add(id(op))
                frontier.append(op)
    return [layer for layer in model.layers if id(layer) in seen]


def read_prepared(table: Table, to_sets, *, stream_above: int | None = None):
    """The examples of a prepared ``table``: ``to_sets`` of its records (read into memory), or, above
    :func:`~atomsets_tf.data.streaming.stream_threshold` ``(stream_above)`` entries,
    :class:`~atomsets_tf.data.streaming.StreamingSets` that stream them."""
    if len(table) > stream_threshold(stream_above):
        return StreamingSets(table.prepared, table.inputs, to_sets)
    return to_sets(table.prepared.records(table.inputs))


#: Entries of a prepared table that inference reads into memory at a time.
PREPARED_CHUNK = 16384


def prepared_chunks(table: Table, size: int = PREPARED_CHUNK):
    """Consecutive parts of a prepared ``table`` of at most ``size`` entries (for inference at flat memory)."""
    for start in range(0, len(table), size):
        yield table.subset(np.arange(start, min(start + size, len(table))))


def predict_in_chunks(table: Table, predict) -> np.ndarray:
    """``predict(part)`` for each of :func:`prepared_chunks` of a prepared ``table``, concatenated: inference at
    flat memory on a large dataset; a table in memory is one part, ``predict(table)``."""
    if table.prepared is None:
        return np.asarray(predict(table))
    parts = [np.asarray(predict(part)) for part in prepared_chunks(table)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def check_tap_names(names: Sequence[str], valid: Sequence[str]) -> None:
    """Refuse a tap name that is not in ``valid``.

    Raises:
        UnknownTapError: naming the first unknown tap and the valid ones.
    """
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise UnknownTapError(f"unknown tap {unknown[0]!r}; valid taps: {', '.join(valid)}")


def require_structures(table: Table, what: str) -> None:
    """Refuse a table of compositions where ``what`` needs structures."""
    if table.kind != "structure":
        raise AtomSetsError(f"{what} needs structures, but {table.source or 'the data'} holds compositions")


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` file saved by atomsets-tf, with Keras' safe mode on.

    The family classes it may hold are registered first (importing the families).

    Raises:
        CheckpointError: the file is missing, corrupt, or not a Keras model.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no such model file: {p}")
    families()  # registers every family's serialisable classes
    try:
        return keras.saving.load_model(p, safe_mode=True, compile=False)  # inference; training compiles afresh
    except Exception as exc:  # zip, JSON, h5 and deserialisation errors all mean "not a usable model"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot load {p.name} as a Keras model: {message}") from None


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_forward(model, spec=None):
    """A compiled inference call of ``model`` (one per model; shape-generic with ``spec``, a dict of TensorSpecs).

    Unlike ``predict_on_batch`` it does not distribute the batch, so it works
    the same inside and outside a ``tf.distribute`` strategy, and it is cheap
    enough to call after every epoch.
    """
    import tensorflow as tf  # the models layer is written in Keras; this one tf.function needs TensorFlow

    if model not in _FORWARD:
        signature = None if spec is None else [spec]
        _FORWARD[model] = tf.function(lambda x: model(x, training=False), input_signature=signature,
                                      reduce_retracing=True, autograph=False)
    return _FORWARD[model]


def predict_sets(model, sets, batch_size: int = 256, with_std: bool = False):
    """Predictions of ``model`` for every example of ``sets`` (any padded-examples collection), in order.

    With ``with_std``, ``(predictions, std)``: the second output column, an
    :class:`~atomsets_tf.models.ensemble.Ensemble`'s standard deviation.
    """
    values = predict_columns(model, sets, [0, 1] if with_std else [0], batch_size)
    return (values[:, 0], values[:, 1]) if with_std else values[:, 0]


def predict_columns(model, sets, columns: Sequence[int], batch_size: int = 256) -> np.ndarray:
    """Output ``columns`` of ``model`` for every example of ``sets``, in order: float64 ``(n, len(columns))``.

    Column 0 is the prediction; further columns are a log-std, an ensemble's std, or a two-part output's
    probability and magnitude, as the model defines them.
    """
    forward = compiled_forward(model, sets.tensor_spec() if hasattr(sets, "tensor_spec") else None)
    out = np.empty((len(sets), len(columns)), dtype=np.float64)
    if getattr(sets, "streams", False):  # a prepared dataset on disk: streamed, at flat memory
        batches = sets.prediction_batches(batch_size)
    else:
        batches = ((idx, sets.padded(idx)) for idx in size_bucketed_batches(sets.sizes(), batch_size))
    for idx, inputs in batches:
        values = np.asarray(forward(inputs))
        out[idx] = (values if values.ndim == 2 else values[:, None])[:, list(columns)]
    return out
