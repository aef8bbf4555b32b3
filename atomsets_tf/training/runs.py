"""Output folders of training runs: the fingerprint of a run's settings, the folder's lock, what a rerun may reuse.

A run records its settings (:func:`run_settings`: what is trained, the data and
its split, the optimisation settings) and their hash (:func:`run_fingerprint`)
in ``.training_state/run.json`` beside the state it resumes from, and in
``metrics.json`` (``"fingerprint"``) once it is done. A later run in the same
folder with other settings is refused (:class:`~atomsets_tf.errors.RunSettingsError`,
naming the settings that differ) unless it is asked to ``restart``, which
discards the old run: resuming another run's weights, or reading another run's
metrics back, would mix two runs silently.

:func:`run_folder` holds the folder's lock (:func:`~atomsets_tf.utils.io.output_lock`)
while a run writes to it; under multi-worker training only the chief does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from atomsets_tf.data.inputs import IN_MEMORY, table_content_hash
from atomsets_tf.errors import CheckpointError, RunSettingsError
from atomsets_tf.training.multi_worker import discard_worker_output_dir, is_chief, worker_output_dir
from atomsets_tf.utils.io import output_lock

#: Sub-folder of an output folder that holds what an interrupted run resumes from.
STATE_DIR = ".training_state"
STATE_FILE = "state.npz"
#: The fingerprint of the run that the state belongs to, beside it.
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
#: The figures of a run folder (and of a benchmark folder): the test set's parity or ROC, the training curve.
PARITY_PNG, ROC_PNG, TRAINING_CURVE_PNG = "parity.png", "roc.png", "training_curve.png"
#: What a finished run leaves in its folder (``restart`` removes them with the state).
RUN_OUTPUTS = (METRICS_FILE, "test_predictions.csv", "training_log.csv", "model.keras", PARITY_PNG, ROC_PNG,
               TRAINING_CURVE_PNG)
#: Training settings added after runs were first recorded, with their defaults: left out at their default, so that
#: the runs recorded before keep their fingerprint.
LATER_SETTINGS = {"steps_per_epoch": None, "stream_above": None, "input_pipelines": 1}
#: Training settings that do not change the numbers, so a resumed run may change them.
OPERATIONAL_SETTINGS = ("checkpoint_every",)
#: Settings recorded for a reader only: the hashes beside them are what is compared.
DESCRIPTIVE_SETTINGS = ("data", "split_file")
_HASH_LABELS = {"data_hash": "data (its ids, targets or, read from memory, inputs)", "split_hash": "split (its ids)"}
RESTART_HINT = "use another output folder, or --restart (restart=True) to discard it"


def content_hash(obj) -> str:
    """A short SHA-256 of ``obj``'s canonical JSON (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def table_hash(ids, targets) -> str:
    """A short SHA-256 of a table's ids and targets (what a run's numbers depend on)."""
    digest = hashlib.sha256("\n".join(map(str, ids)).encode())
    digest.update(np.ascontiguousarray(np.asarray(targets, dtype=np.float64)).tobytes())
    return digest.hexdigest()[:16]


def run_settings(
    trained: Mapping,
    table,
    task_type: str,
    splits,
    protocol: str,
    fold: int,
    val_fraction: float,
    split_file=None,
    training=None,
) -> dict:
    """Everything that determines a run's numbers, readable: the input of :func:`run_fingerprint`.

    Args:
        trained: what is trained: ``{"model": ..., "model_config": ..., ...}``
            (:func:`~atomsets_tf.workflows.fit.fit_model_settings`,
            :func:`~atomsets_tf.workflows.retrain.retrain_model_settings`).
        table: the data (its ids and targets are hashed; for data read from memory, which no path names, its
            inputs too: :func:`~atomsets_tf.data.inputs.table_content_hash`).
        splits: the ``(train, val, test)`` indices (the ids of each part are hashed).
        protocol, fold, val_fraction, split_file: how the split was made.
        training: a ``TrainingConfig`` (None for a model without training); a setting of LATER_SETTINGS at its
            default is left out.
    """
    parts = {name: [table.ids[i] for i in idx] for name, idx in zip(("train", "val", "test"), splits)}
    if split_file is not None and not isinstance(split_file, Mapping):
        split_file = str(split_file)
    elif split_file is not None:
        split_file = "ids given"
    config = None
    if training is not None:
        config = {k: v for k, v in (asdict(training) if is_dataclass(training) else dict(training)).items()
                  if k not in OPERATIONAL_SETTINGS and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    return {
        **trained,
        "data": table.meta.get("task") or table.source,
        "data_hash": table_content_hash(table) if table.meta.get(IN_MEMORY) else table_hash(table.ids, table.targets),
        "task_type": task_type,
        "protocol": protocol,
        "fold": int(fold),
        "val_fraction": float(val_fraction),
        "split_file": split_file,
        "split_hash": content_hash(parts),
        "training": config,
    }


def run_fingerprint(settings: Mapping) -> dict:
    """``{"hash", "settings"}``: the settings (as JSON sees them) and the hash of those that are compared."""
    settings = json.loads(json.dumps(settings, default=str))
    compared = {k: v for k, v in settings.items() if k not in DESCRIPTIVE_SETTINGS}
    return {"hash": content_hash(compared), "settings": settings}


def settings_differences(recorded: Mapping, wanted: Mapping) -> list[str]:
    """What differs between two runs' settings, e.g. ``['learning_rate 0.001 -> 0.01', 'model ...']``."""
    differences = []
    for key in [*wanted, *(k for k in recorded if k not in wanted)]:
        old, new = recorded.get(key), wanted.get(key)
        if key in DESCRIPTIVE_SETTINGS or old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            differences += settings_differences(old, new)
        elif key in _HASH_LABELS:
            differences.append(_HASH_LABELS[key])
        else:
            differences.append(f"{key} {json.dumps(old)} -> {json.dumps(new)}")
    return differences


def _read_json(path: Path, folder: Path) -> dict:
    """A JSON object that records a run; a corrupt one is a :class:`CheckpointError` saying how to start afresh."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        record = exc
    if not isinstance(record, dict):
        why = f"({record})" if isinstance(record, Exception) else "(not a JSON object)"
        raise CheckpointError(f"{path} is corrupt {why}; use another output folder, or --restart (restart=True) "
                              f"to discard the run in {folder}")
    return record


def recorded_fingerprint(folder: str | os.PathLike) -> dict | None:
    """The fingerprint of the run in ``folder``: ``None`` when it holds none, ``{}`` when its run did not record one.

    An interrupted run (with a saved state) counts first, then a finished one (``metrics.json``).
    """
    folder = Path(folder)
    state = folder / STATE_DIR
    if (state / STATE_FILE).exists():
        return _read_json(state / RUN_FILE, folder) if (state / RUN_FILE).is_file() else {}
    if (folder / METRICS_FILE).is_file():
        fingerprint = _read_json(folder / METRICS_FILE, folder).get("fingerprint")
        return fingerprint if isinstance(fingerprint, dict) else {}
    return None


def check_run_folder(folder: str | os.PathLike, fingerprint: Mapping) -> None:
    """Refuse a folder that holds a run (interrupted or finished) with other settings than ``fingerprint``'s.

    Raises:
        RunSettingsError: naming the folder and the settings that differ.
        CheckpointError: the folder's record of its run is corrupt.
    """
    recorded = recorded_fingerprint(folder)
    if recorded is None or recorded.get("hash") == fingerprint["hash"]:
        return
    if not isinstance(recorded.get("settings"), Mapping):
        raise RunSettingsError(f"{folder} holds a run whose settings were not recorded (an older version of "
                               f"atomsets-tf made it); {RESTART_HINT}")
    differences = settings_differences(recorded["settings"], fingerprint["settings"]) or ["its fingerprint"]
    raise RunSettingsError(f"{folder} holds a run with other settings ({'; '.join(differences)}); {RESTART_HINT}")


def is_finished(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished run: a ``metrics.json`` and no state to resume from."""
    folder = Path(folder)
    return (folder / METRICS_FILE).is_file() and not (folder / STATE_DIR / STATE_FILE).exists()


def discard_run(folder: str | os.PathLike) -> None:
    """Remove a run's state and outputs from ``folder`` (what ``restart`` does)."""
    folder = Path(folder)
    shutil.rmtree(folder / STATE_DIR, ignore_errors=True)
    for name in RUN_OUTPUTS:
        (folder / name).unlink(missing_ok=True)


@contextlib.contextmanager
def run_folder(out_dir: str | os.PathLike | None, fingerprint: Mapping, restart: bool = False,
               strategy=None) -> Iterator[Path | None]:
    """The folder this process writes a run to, checked against ``fingerprint`` (or cleared, with ``restart``).

    The chief (any process outside multi-worker training) locks ``out_dir`` for
    the duration and yields it. Another worker checks it without locking and
    yields a private folder (see
    :func:`~atomsets_tf.training.multi_worker.worker_output_dir`), removed
    afterwards. ``None`` yields ``None`` (nothing is written).

    Raises:
        RunLockedError: another process is writing to ``out_dir``.
        RunSettingsError: ``out_dir`` holds a run with other settings and ``restart`` is false.
    """
    if out_dir is None:
        yield None
        return
    folder = Path(out_dir)
    if not is_chief(strategy):
        if not restart:
            check_run_folder(folder, fingerprint)
        private = worker_output_dir(folder, strategy)
        if restart:
            discard_run(private)
        try:
            yield private
        finally:
            discard_worker_output_dir(private, folder)
        return
    with output_lock(folder):
        if restart:
            discard_run(folder)
        else:
            check_run_folder(folder, fingerprint)
        yield folder
