"""One entry point for every model the package reads: AtomSets, MEGNet and CGAT.

:func:`load_model` takes a path (``.keras``, megnet ``.hdf5``, CGAT Lightning
``.ckpt``) or a preset name; :func:`predict_table`, :func:`tap_table`,
:func:`iter_tap_table` (chunk by chunk) and :func:`describe` run whatever it
returned on a data table. Each goes through the model's family
(:mod:`~atomsets_tf.models.base`, :mod:`~atomsets_tf.models.registry`). Each takes, for its ``table``,
anything :func:`~atomsets_tf.data.inputs.as_table` reads: a :class:`~atomsets_tf.data.io.Table`, a path, a
pandas ``DataFrame``, pymatgen structures or compositions, ASE ``Atoms`` or formula strings.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from atomsets_tf import presets
from atomsets_tf.data.inputs import as_table
from atomsets_tf.data.io import input_labels
from atomsets_tf.errors import CheckpointError, DisorderedSiteError
from atomsets_tf.models.base import load_keras_model
from atomsets_tf.models.registry import families, family, family_names, family_of
from atomsets_tf.utils.progress import progress_bar

#: Suffixes of the files :func:`load_model` reads.
MODEL_SUFFIXES = (".keras", ".hdf5", ".h5", ".ckpt")


def keras_file_config(path: Path) -> dict:
    """The top-level ``config.json`` of a ``.keras`` file, read as data (nothing is deserialised).

    Raises:
        CheckpointError: not a ``.keras`` file, or one whose ``config.json`` is not an object.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path.name} is not a .keras model file ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path.name} is not a .keras model file (its config.json is not an object)")
    return config


def _load_file(p: Path):
    suffix = p.suffix.lower()
    if suffix == ".keras":
        config = keras_file_config(p)
        owner = next((f for f in families() if f.recognises_keras(config)), None)
        return owner.load(p) if owner is not None else load_keras_model(p)
    owner = next((f for f in families() if suffix in f.suffixes), None)
    if owner is None:
        raise CheckpointError(f"{p.name}: unknown model format (expected .keras, megnet .hdf5 or CGAT .ckpt)")
    return owner.load(p)


def load_model(spec: str | os.PathLike):
    """Load a model by path or preset name.

    Returns an :class:`~atomsets_tf.models.AtomSets`, a
    :class:`~atomsets_tf.models.megnet.model.MEGNet` or a :class:`~atomsets_tf.models.cgat.model.CGAT`.

    Raises:
        CheckpointError: an unreadable, corrupt or foreign file.
        UnknownPresetError: a name that is neither a file nor a preset.
    """
    p = Path(os.fspath(spec))
    if p.is_file():
        model = _load_file(p)
        model.loaded_as = str(p)
        return model
    if any(sep in os.fspath(spec) for sep in (os.sep, "/")) or p.suffix in MODEL_SUFFIXES:
        raise CheckpointError(f"no such model file: {p}")
    preset = presets.get_preset(str(spec))
    if preset.kind in family_names():
        model = family(preset.kind).from_preset(preset.name)
        model.loaded_as = preset.name  # what messages call it (see model_label)
        return model
    raise CheckpointError(f"preset {preset.name!r} is a {preset.kind}, not a model")


def model_kind(model) -> str:
    """The family of ``model``: ``"atomsets"``, ``"megnet"`` or ``"cgat"``."""
    return family_of(model).name


def model_label(model) -> str:
    """What messages call ``model``: the preset name or file :func:`load_model` read it from, else its family."""
    return getattr(model, "loaded_as", None) or family_of(model).name


@contextmanager
def naming_the_model(model) -> Iterator[None]:
    """Name ``model`` in a :class:`~atomsets_tf.errors.DisorderedSiteError` raised inside (by the graphs of a
    MEGNet or CGAT, perhaps the parent an AtomSets model taps)."""
    try:
        yield
    except DisorderedSiteError as exc:
        raise DisorderedSiteError(f"{model_label(model)} needs ordered sites (one element per site): {exc}") from None


def predict_table(model, table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
    """Predictions (in target units) of any loaded model for every entry of ``table``, in order.

    Args:
        model: a loaded model (:func:`load_model`).
        table: a :class:`~atomsets_tf.data.io.Table`, or anything :func:`~atomsets_tf.data.inputs.as_table`
            reads (a DataFrame, structures, ASE ``Atoms``, formula strings, a path).
        batch_size: entries per batch (``None``: the family's default).
        progress: a progress bar on stderr.

    Returns:
        float ``(n,)``, in the order of the entries.
    """
    with naming_the_model(model):
        return family_of(model).predict_table(model, as_table(table), batch_size, progress)


def model_task_type(model) -> str:
    """``"classification"`` for a model whose output is a probability (an AtomSets classifier, or an ensemble of
    them), else ``"regression"``."""
    return getattr(model, "task_type", "regression")


def predict_with_std(model, table, batch_size: int | None = None,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions of any loaded model and their standard deviation: an ensemble's (rescaled) spread over its
    members, ``None`` for a single model. ``table``: as :func:`predict_table`'s."""
    with naming_the_model(model):
        return family_of(model).predict_with_std(model, as_table(table), batch_size, progress)


def extra_outputs(model, table, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Per-entry outputs of ``model`` beside its prediction, by column name: a two-part band-gap model's
    ``probability_nonzero`` (P(gap > 0); its prediction is exactly 0 below 0.5); none for most models."""
    with naming_the_model(model):
        return family_of(model).extra_outputs(model, as_table(table), batch_size)


def predict_frame(model, table, batch_size: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Every entry's prediction beside its id and its input, as ``atomsets-tf predict`` writes them.

    :func:`predict_table` stays a bare float array, in the order of the entries, so that it can be compared
    with the targets as it is; this is the table a person reads: one row per entry, columns as
    :func:`prediction_frame`'s.

    Args:
        model, table, batch_size, progress: as :func:`predict_table`'s.
    """
    table = as_table(table)
    predictions, std = predict_with_std(model, table, batch_size, progress)
    return prediction_frame(table.ids, predictions, inputs=input_labels(table), std=std,
                            classifier=model_task_type(model) == "classification",
                            extra=extra_outputs(model, table, batch_size))


def prediction_frame(ids: Sequence[str], predictions, inputs: Sequence[str] | None = None, targets=None, std=None,
                     classifier: bool = False, extra: dict | None = None) -> pd.DataFrame:
    """The columns of a predictions table, in order: ``id``, ``input`` (the formula or composition as given,
    a structure's reduced formula), ``target``, ``prediction``, ``std`` (an ensemble's), ``probability`` (a
    classifier's, whose ``prediction`` is then the class, ``probability >= 0.5``), then ``extra`` (e.g.
    ``probability_nonzero``); the columns without values are left out."""
    predictions = np.asarray(predictions, dtype=np.float64)
    columns: dict = {"id": list(ids)}
    if inputs is not None:
        columns["input"] = list(inputs)
    if targets is not None:
        columns["target"] = np.asarray(targets, dtype=np.float64)
    columns["prediction"] = (predictions >= 0.5).astype(int) if classifier else predictions
    if std is not None:
        columns["std"] = np.asarray(std, dtype=np.float64)
    if classifier:
        columns["probability"] = predictions
    columns.update({name: np.asarray(values, dtype=np.float64) for name, values in (extra or {}).items()})
    return pd.DataFrame(columns)


def tap_table(model, table, names, batch_size: int | None = None, progress: bool = False) -> dict:
    """Intermediate features of a MEGNet or CGAT model (see their ``tap``) for the structures of ``table`` (as
    :func:`predict_table`'s: a Table, a DataFrame, structures, ASE ``Atoms``, ...)."""
    with naming_the_model(model):
        return family_of(model).tap_table(model, as_table(table), list(names), batch_size, progress)


def iter_tap_table(model, table, names: Sequence[str], batch_size: int | None = None, chunk_size: int = 4096,
                   progress: bool = False, start: int = 0) -> Iterator[tuple[list[str], dict]]:
    """Intermediate features of ``table``, chunk by chunk: only one chunk's results are in memory.

    Calls the family's ``tap_table`` (as :func:`tap_table` does) on
    ``table.subset(...)`` of ``chunk_size`` consecutive entries at a time, from
    entry ``start`` on (``start > 0``: resume a folder that already holds the first
    entries). Feed it to :class:`~atomsets_tf.workflows.outputs.TapShardWriter`.

    Args:
        model: a loaded MEGNet or CGAT model.
        table: the structures (as :func:`predict_table`'s ``table``).
        names: tap names (see :func:`tap_names`).
        batch_size: structures per padded batch (``None``: the family's default; MEGNet plans its batches by
            cost).
        chunk_size: entries per chunk (the last one may have fewer).
        progress: one bar over all chunks on stderr (shown only on a terminal; see
            :func:`~atomsets_tf.utils.progress.progress_bar`).
        start: the index of the first entry to tap.

    Returns:
        An iterator of ``(ids, taps)``, ``taps`` as :func:`tap_table` returns them for those ids.

    Raises:
        UnknownTapError, EmptyStructureError, IsolatedAtomError, UnknownElementError, DataFormatError:
            from the family's ``tap_table``, when the chunk holding the bad entry is reached.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    owner, names, table = family_of(model), list(names), as_table(table)
    with progress_bar(len(table), "tap", "structure", progress, initial=start) as bar:
        for first in range(start, len(table), chunk_size):
            chunk = table.subset(range(first, min(first + chunk_size, len(table))))

            def report(done: int, total: int, first: int = first) -> None:
                bar.update(first + done - bar.n)

            with naming_the_model(model):
                taps = owner.tap_table(model, chunk, names, batch_size, report if progress else False)
            bar.update(first + len(chunk) - bar.n)
            yield chunk.ids, taps
            del chunk, taps  # freed before the next chunk is tapped


def tap_names(model) -> list[str]:
    """The names ``model`` can be tapped at (empty for a model without taps)."""
    return list(family_of(model).tap_names(model))


def describe(model) -> str:
    """A text description of any loaded model."""
    return family_of(model).describe(model)
