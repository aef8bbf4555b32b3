"""The model interface every family implements, and the inference helpers the families share.

A *family* is a kind of model (AtomSets, MEGNet, CGAT). Its :class:`ModelFamily`
object is the one place that knows how to recognise, load, run, tap and retrain
its models; everything above the models layer (workflows, evaluation, the CLI)
goes through it, found by :func:`~atomsets_tf.models.registry.family_of` or
:func:`~atomsets_tf.models.registry.family`, never by class or layer names.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

import atomsets_tf.layers  # noqa: F401  (registers the serialisable layers and optimizers a saved model may hold)
from atomsets_tf.data.io import Table
from atomsets_tf.data.padding import size_bucketed_batches
from atomsets_tf.data.streaming import StreamingSets, stream_threshold
from atomsets_tf.errors import AtomSetsError, CheckpointError, UnknownTapError
from atomsets_tf.models.registry import families


class ModelFamily:
    """What a model family provides (one instance per family, ``FAMILY`` in its ``family`` module).

    Attributes:
        name: the family's name in :mod:`~atomsets_tf.models.registry` (``"megnet"``, ...).
        model_class: the class of its models.
        suffixes: file suffixes it reads besides ``.keras`` (e.g. ``(".hdf5",)``).
    """

    name: str = ""
    model_class: type = object
    suffixes: tuple[str, ...] = ()

    def owns(self, model) -> bool:
        """Whether ``model`` is one of this family's."""
        return isinstance(model, self.model_class)

    def recognises_keras(self, config: dict) -> bool:
        """Whether a ``.keras`` file whose top-level ``config.json`` is ``config`` holds this family's model
        (read as data: nothing is deserialised)."""
        name = self.model_class.__name__
        return config.get("registered_name") == f"atomsets_tf>{name}" or config.get("class_name") == name

    def load(self, path: Path):
        """The model in ``path`` (a ``.keras`` file, or a file with one of :attr:`suffixes`)."""
        raise NotImplementedError

    def from_preset(self, name: str):
        """The model of the preset ``name``."""
        raise NotImplementedError

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Predictions (target units) for every entry of ``table``, in order."""
        raise NotImplementedError

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

    def tap_table(self, model, table: Table, names: Sequence[str], batch_size: int | None = None,
                  progress: bool = False) -> dict:
        """Intermediate features of ``model`` for ``table`` (see the family's ``tap``)."""
        raise AtomSetsError(f"{self.name} models have no taps")

    def describe(self, model) -> str:
        """A text description: the model's blocks and, where it has them, its tap names."""
        lines: list[str] = []
        model.summary(print_fn=lambda line, **_: lines.append(line))
        taps = self.tap_names(model)
        if taps:
            lines.append("taps: " + ", ".join(taps))
        return "\n".join(lines)

    def is_head(self, layer) -> bool:
        """Whether ``layer`` belongs to the head that ``head`` transfer mode retrains."""
        raise NotImplementedError

    def record_builder(self, model):
        """The builder of ``model``'s prepared-dataset records (:class:`~atomsets_tf.data.prepared.RecordBuilder`:
        picklable, free of TensorFlow, carrying the model's graph settings)."""
        raise AtomSetsError(f"{self.name} models read no prepared datasets")

    def sets_from_records(self, model, records: Sequence[dict]):
        """The padded-examples collection (what :meth:`sets` returns) of prepared-dataset records."""
        raise AtomSetsError(f"{self.name} models read no prepared datasets")

    def prepared_sets(self, model, table: Table, *, stream_above: int | None = None):
        """The padded-examples collection of a table read from a prepared dataset (``table.prepared``), after
        checking that the dataset was prepared with ``model``'s settings: read into memory, or streamed from the
        shards for a table of more than ``stream_above`` entries (``None``: the default; see
        :mod:`~atomsets_tf.data.streaming`).

        Raises:
            PreparedDatasetError: the dataset was prepared for another kind of model or with other settings.
        """
        self.check_prepared(model, table)
        return read_prepared(table, lambda records: self.sets_from_records(model, records), stream_above=stream_above)

    def prepared_examples(self, model, table: Table):
        """The examples of a prepared ``table`` (checked like :meth:`prepared_sets`), read into memory: for
        inference on a part of the table (:func:`predict_in_chunks`)."""
        self.check_prepared(model, table)
        return self.sets_from_records(model, table.prepared.records(table.inputs))

    def check_prepared(self, model, table: Table) -> None:
        """Refuse a prepared ``table`` whose records were not prepared with ``model``'s settings.

        Raises:
            PreparedDatasetError: another kind of records, or other settings (naming the manifest).
        """
        builder = self.record_builder(model)
        table.prepared.check_compatible(builder.kind, builder.settings, what=self.name)


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
