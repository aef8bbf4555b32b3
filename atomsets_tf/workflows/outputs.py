"""What a run writes: the model, ``metrics.json``, prediction CSVs, plots, tap ``.npz`` files and folders, versions.

Every file is written atomically (:func:`~atomsets_tf.utils.io.atomic_path`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf._version import __version__
from atomsets_tf.data.fingerprints import entries_hash
from atomsets_tf.data.io import Table
from atomsets_tf.data.matbench_tasks import TASKS
from atomsets_tf.data.taps import (
    FOLDER_FORMAT,
    FOLDER_VERSION,
    INDEX_FILE,
    PARTIAL_INDEX_FILE,
    file_sha256,
    pack_taps,
    read_tap_index,
    shard_name,
    tap_levels,
)
from atomsets_tf.errors import PlotsUnavailableError, RunSettingsError
from atomsets_tf.models.loading import iter_tap_table, prediction_frame
from atomsets_tf.training.metrics import metric_name
from atomsets_tf.training.runs import PARITY_PNG, ROC_PNG, TRAINING_CURVE_PNG
from atomsets_tf.training.trainer import TRAINING_LOG
from atomsets_tf.utils.io import atomic_path, output_lock, write_json_atomic
from atomsets_tf.utils.plots import parity_plot, roc_plot, training_curve_plot


def write_outputs(out_dir, model, metrics: dict, ids, targets, predictions, save_model=None, std=None) -> None:
    """Write ``model.keras`` (unless ``model`` is None), ``metrics.json`` and ``test_predictions.csv`` (with a
    ``std`` column for an ensemble) atomically."""

    out = Path(out_dir)
    if model is not None:
        with atomic_path(out / "model.keras") as tmp:
            (save_model or (lambda m, p: m.save(p)))(model, tmp)
    write_json_atomic(out / "metrics.json", metrics)
    write_predictions_csv(out / "test_predictions.csv", ids, predictions, targets, std)


def target_label(table: Table, task_type: str) -> dict:
    """``quantity`` and ``unit`` of a table's target for the plots: the target column's name and, for a
    Matbench regression task, its unit (:data:`~atomsets_tf.data.matbench_tasks.TASKS`); no unit otherwise."""
    task = table.meta.get("task")
    unit = TASKS.get(task, {}).get("matbench_unit") if task_type == "regression" else None
    return {"quantity": table.target_name or "target", "unit": None if unit == "unitless" else unit}


def write_test_plot(out_dir, task_type: str, targets, predictions, *, quantity: str, unit: str | None,
                    title: str) -> dict:
    """Write ``parity.png`` (regression) or ``roc.png`` (classification) of the test predictions in ``out_dir``.

    Returns:
        ``{"parity": "parity.png"}`` or ``{"roc": "roc.png"}`` (file names in ``out_dir``), or ``{}`` with a
        warning naming the ``plot`` extra when matplotlib is not installed.
    """
    try:
        if task_type == "classification":
            roc_plot(targets, predictions, Path(out_dir) / ROC_PNG, title=title, positive=quantity)
            return {"roc": ROC_PNG}
        parity_plot(targets, predictions, Path(out_dir) / PARITY_PNG, quantity=quantity, unit=unit, title=title)
        return {"parity": PARITY_PNG}
    except PlotsUnavailableError as exc:
        warnings.warn(f"{exc}: no plots written", stacklevel=2)
        return {}
    except Exception as exc:  # a plot is a side output: matplotlib failing (fonts, backend) must not fail the run
        warnings.warn(f"the plot in {out_dir} failed ({type(exc).__name__}: {exc}); the run's results are written",
                      stacklevel=2)
        return {}


def write_run_plots(out_dir, metrics: Mapping, targets, predictions, *, quantity: str, unit: str | None) -> dict:
    """The plots of a trained run: :func:`write_test_plot` and ``training_curve.png`` (from ``training_log.csv``).

    Returns:
        The file names written, by kind (``parity`` or ``roc``, ``training_curve``); ``{}`` without matplotlib.
    """
    task_type = metrics["task_type"]
    title = f"{metrics.get('model') or 'model'} on {Path(str(metrics.get('data') or 'the data')).name}"
    plots = write_test_plot(out_dir, task_type, targets, predictions, quantity=quantity, unit=unit,
                            title=f"{title}: test set")
    log = Path(out_dir) / TRAINING_LOG
    if plots and log.is_file():
        metric = f"val_{metric_name(task_type)}"
        try:
            training_curve_plot(log, Path(out_dir) / TRAINING_CURVE_PNG, metric=metric, title=title,
                                unit=unit if task_type == "regression" else None)
            plots["training_curve"] = TRAINING_CURVE_PNG
        except KeyError:  # a log without the loss or the metric (a run that trained no epoch here)
            pass
        except Exception as exc:  # a side output, as in write_test_plot
            warnings.warn(f"the training-curve plot in {out_dir} failed ({type(exc).__name__}: {exc})", stacklevel=2)
    return plots


def write_predictions_csv(path, ids, predictions, targets=None, std=None, probability: bool = False) -> None:
    """Write ``id[,target],prediction[,std][,probability]`` CSV atomically (see
    :func:`~atomsets_tf.models.loading.prediction_frame`; ``probability``: a classifier's output)."""
    write_frame_csv(path, prediction_frame(ids, predictions, targets=targets, std=std, classifier=probability))


def write_frame_csv(path, frame) -> None:
    """Write a pandas ``DataFrame`` as CSV atomically, without its index; floats as Python prints them (they
    read back to the same float64)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def versions() -> dict:
    """Versions of the packages that determine the numbers."""

    return {
        "atomsets_tf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_taps_npz(path, ids, taps: dict) -> None:
    """Write tapped features as ``.npz`` atomically, in the layout of :mod:`atomsets_tf.data.taps`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **pack_taps(ids, taps))


#: Entries per shard of a tap folder when none is given (``atomsets-tf tap -o DIR/``).
DEFAULT_SHARD_SIZE = 4096


class TapShardWriter:
    """Write a sharded tap folder (layout: :mod:`atomsets_tf.data.taps`) one chunk at a time.

    A context manager: it holds the folder's lock (:func:`~atomsets_tf.utils.io.output_lock`)
    while open. :meth:`write` writes each chunk as the next shard, atomically, and
    records it in ``index.partial.json``; a clean exit writes ``index.json`` (last)
    and removes the partial index. Nothing of a chunk is kept once it is written.

    When ``ids`` is given and the folder holds the partial (or complete) index of a
    run with the same settings (model, data, ids and the entries' contents, tap names,
    shard size), the shards
    whose sha256 still matches are kept: :attr:`done` entries need not be tapped again.

    Args:
        folder: the output folder (created if needed).
        shard_size: entries per shard; every chunk but the last must have exactly this many.
        ids: every entry's id, in order (enables resuming, and checks the total on exit).
        inputs: the entries (structures), ``inputs[i]`` named by ``ids[i]``: their contents are
            fingerprinted (:func:`~atomsets_tf.data.inputs.entries_hash`), so that changed structures
            under the same ids are refused rather than resumed (``None``: the ids alone).
        names: the tap names, for the settings of a resume.
        model: the model the taps come from (a path or preset name), for the index.
        data: the data they were computed on, for the index.
        resume: whether to keep the matching shards of an earlier run.

    Raises:
        RunLockedError: another process is writing ``folder``.
        RunSettingsError: ``folder`` holds a tap index made with other settings.
    """

    def __init__(self, folder: str | os.PathLike, shard_size: int, *, ids: Sequence[str] | None = None,
                 inputs: Sequence | None = None, names: Sequence[str] = (), model: str = "", data: str = "",
                 resume: bool = True):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.folder = Path(folder)
        self.shard_size = int(shard_size)
        self.n_total = None if ids is None else len(ids)
        self.model, self.data = str(model), str(data)
        self.settings = None if ids is None else _tap_settings(ids, inputs, names, self.shard_size, self.model,
                                                               self.data)
        self.resume = resume and ids is not None
        self.done = 0
        self._shards: list[dict] = []
        self._levels: dict[str, dict] | None = None
        #: The index written on a clean exit (``None`` until then).
        self.index: dict | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> TapShardWriter:
        self._stack.enter_context(output_lock(self.folder))
        try:
            self._resume()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._stack.close()

    def write(self, ids: Sequence[str], taps: Mapping[str, object]) -> None:
        """Write the next ``len(ids)`` entries as one shard (atomically) and record it in the partial index."""
        n = len(ids)
        if n > self.shard_size or (self._shards and self._shards[-1]["n"] != self.shard_size):
            raise ValueError(f"shards hold {self.shard_size} entries (only the last one fewer): "
                             f"got {n} entries after shards of {[s['n'] for s in self._shards]}")
        levels = tap_levels(n, taps)
        if self._levels is None:
            self._levels = levels
        elif _level_names(levels) != _level_names(self._levels):
            raise ValueError(f"shard {len(self._shards)} has taps {_level_names(levels)}, "
                             f"the first one {_level_names(self._levels)}")
        path = self.folder / shard_name(len(self._shards))
        widths = {k: v["width"] for k, v in self._levels.items() if v["width"] is not None}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **pack_taps(ids, taps, widths))
        self._shards.append({"file": path.name, "n": n, "first": self.done, "sha256": file_sha256(path),
                             "bytes": path.stat().st_size})
        self.done += n
        write_json_atomic(self.folder / PARTIAL_INDEX_FILE, self._index(complete=False))

    def write_all(self, chunks: Iterable[tuple[Sequence[str], Mapping[str, object]]]) -> None:
        """:meth:`write` each ``(ids, taps)`` chunk of ``chunks`` (an iterator: one chunk alive at a time)."""
        for ids, taps in chunks:
            self.write(ids, taps)
            del ids, taps  # so that the next chunk is computed with this one freed

    def _index(self, complete: bool) -> dict:
        return {"format": FOLDER_FORMAT, "version": FOLDER_VERSION, "complete": complete, "n": self.done,
                "model": self.model, "data": self.data, "shard_size": self.shard_size,
                "settings": self.settings, "taps": self._levels or {}, "shards": self._shards}

    def _resume(self) -> None:
        """Keep the shards of an earlier run with the same settings whose sha256 still matches."""
        found = [self.folder / n for n in (INDEX_FILE, PARTIAL_INDEX_FILE) if (self.folder / n).is_file()]
        index = read_tap_index(self.folder, found[0].name) if found and self.resume else None
        if index is not None and index.get("settings") != self.settings:
            raise RunSettingsError(
                f"{self.folder} holds taps of another run ({index.get('model')!r} on {index.get('data')!r}, "
                f"{index.get('n')} entries in shards of {index.get('shard_size')}): remove it or use another folder")
        for path in found:
            path.unlink()  # the folder is no longer complete; a matching prefix is recorded anew below
        if index is not None:
            self._levels = index.get("taps") or None
            self._keep_matching(index["shards"])

    def _keep_matching(self, shards: list[dict]) -> None:
        for k, shard in enumerate(shards):
            path = self.folder / str(shard.get("file"))
            if shard.get("file") != shard_name(k) or not path.is_file() or file_sha256(path) != shard.get("sha256"):
                break
            self._shards.append(shard)
            self.done += int(shard["n"])
        if self._shards:
            write_json_atomic(self.folder / PARTIAL_INDEX_FILE, self._index(complete=False))

    def _finish(self) -> None:
        if self.n_total is not None and self.done != self.n_total:
            raise ValueError(f"{self.folder}: {self.done} of {self.n_total} entries were written")
        self.index = self._index(complete=True)
        write_json_atomic(self.folder / INDEX_FILE, self.index)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / PARTIAL_INDEX_FILE).unlink()


def write_tap_shards(folder: str | os.PathLike, chunks: Iterable[tuple[Sequence[str], Mapping[str, object]]],
                     shard_size: int, model: str = "", data: str = "") -> Path:
    """Write the ``(ids, taps)`` chunks of an iterator as a sharded tap folder; returns the folder.

    Each chunk becomes one shard (every one but the last of ``shard_size`` entries);
    only one chunk is alive at a time. An earlier index in ``folder`` is replaced
    (no resume: see :class:`TapShardWriter` for that).
    """
    with TapShardWriter(folder, shard_size, model=model, data=data, resume=False) as writer:
        writer.write_all(chunks)
    return Path(folder)


def write_tap_folder(model, table: Table, names: Sequence[str], folder: str | os.PathLike, batch_size: int | None = None,
                     shard_size: int = DEFAULT_SHARD_SIZE, model_name: str = "", data: str = "",
                     progress: bool = False) -> dict:
    """Tap ``model`` on ``table`` chunk by chunk into the sharded tap folder ``folder``; returns its index.

    One chunk of ``shard_size`` entries is in memory at a time. A folder that an
    interrupted call with the same settings left behind is resumed: its intact
    shards are not tapped again.

    Args:
        model: a loaded MEGNet or CGAT model.
        table: the structures.
        names: tap names.
        folder: the output folder.
        batch_size: structures per padded batch.
        shard_size: entries per shard.
        model_name: the model's path or preset name, for the index (and the settings of a resume).
        data: the data's path or name, for the index (and the settings of a resume).
        progress: a progress bar on stderr (on a terminal).

    Returns:
        The index written as ``folder/index.json`` (layout: :mod:`atomsets_tf.data.taps`).

    Raises:
        RunLockedError, RunSettingsError: see :class:`TapShardWriter`.
        UnknownTapError, EmptyStructureError, IsolatedAtomError, UnknownElementError, DataFormatError:
            a bad tap name or entry (the shards before it are kept).
    """
    names = list(names)
    with TapShardWriter(folder, shard_size, ids=table.ids, inputs=table.inputs, names=names, model=model_name,
                        data=data) as writer:
        writer.write_all(iter_tap_table(model, table, names, batch_size, shard_size, progress, start=writer.done))
    return writer.index


def _tap_settings(ids: Sequence[str], inputs: Sequence | None, names: Sequence[str], shard_size: int, model: str,
                  data: str) -> str:
    """A fingerprint of what a tap folder holds (the entries' ids and contents, the taps, the model):
    equal fingerprints, interchangeable shards."""
    contents = entries_hash(ids, [None] * len(ids) if inputs is None else inputs)
    text = json.dumps({"entries": contents, "n": len(ids), "names": list(names), "shard_size": shard_size,
                       "model": model, "data": data})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _level_names(levels: Mapping[str, Mapping]) -> list[tuple[str, object]]:
    return sorted((name, info["level"]) for name, info in levels.items())
