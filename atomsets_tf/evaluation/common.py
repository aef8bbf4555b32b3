"""What the evaluation commands share: training settings by data size and budget, the tables a set of models
trains on, one run on one split, the records and figures they write.

:mod:`~atomsets_tf.evaluation.protocol` (``benchmark``), :mod:`~atomsets_tf.evaluation.grid`,
:mod:`~atomsets_tf.evaluation.learning_curve` and :mod:`~atomsets_tf.evaluation.extrapolation`
all use these; none of them reaches into another's internals.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from atomsets_tf.data import io as data_io
from atomsets_tf.errors import AtomSetsError, PlotsUnavailableError
from atomsets_tf.evaluation.reference import TASKS
from atomsets_tf.evaluation.runners import (
    benchmark_models,
    expected_fingerprint,
    load_task,
    needs_structures,
    run_model,
)
from atomsets_tf.training.runs import METRICS_FILE, check_run_folder, is_finished
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils import plots
from atomsets_tf.utils.io import write_json_atomic
from atomsets_tf.workflows.fit import ModelConfig
from atomsets_tf.workflows.outputs import versions

#: Units of the Matbench v0.1 regression targets (for axis labels), from their metadata; none for a unitless one.
TARGET_UNITS = {task: info["matbench_unit"] for task, info in TASKS.items()
                if info["task_type"] == "regression" and info["matbench_unit"] != "unitless"}


#: Optimisation settings: one for every size, a function of the data size N, or None (:func:`default_training`).
TrainingSpec = TrainingConfig | Callable[[int], TrainingConfig] | None


def training_for(training: TrainingSpec, n: int, budget_epochs: int | None = None) -> TrainingConfig:
    """The settings to train on ``n`` entries: ``training`` (or its value at ``n``), capped at ``budget_epochs``."""
    if training is None:
        return default_training(n, budget_epochs)
    config = training if isinstance(training, TrainingConfig) else training(n)
    return capped(config, budget_epochs)


def check_models(models: str | Sequence[str]) -> list[str]:
    """``models`` as a list of distinct, known model names."""
    models = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in models if m not in benchmark_models()]
    if not models or unknown or len(set(models)) != len(models):
        raise AtomSetsError(f"models must be distinct names among {', '.join(benchmark_models())}, got {models}")
    return models


def task_tables(data: str | os.PathLike | data_io.Table, models: Sequence[str]) -> dict[str, data_io.Table]:
    """The table each model trains on (read once per kind: compositions or structures)."""
    by_kind: dict[bool, data_io.Table] = {}
    for model in models:
        if needs_structures(model) not in by_kind:
            by_kind[needs_structures(model)] = load_task(data, model)
    return {model: by_kind[needs_structures(model)] for model in models}


def train_on_split(
    table: data_io.Table,
    model: str,
    split: Mapping[str, list[str]],
    run_dir: str | os.PathLike,
    training: TrainingConfig,
    model_config: ModelConfig | None = None,
    features_from: str | None = None,
    progress: bool = False,
    restart: bool = False,
) -> dict:
    """Train ``model`` on an explicit split in ``run_dir`` (or read a finished run back); its ``metrics``.

    ``run_dir/split.json`` records the ids; a folder that holds a run on other ids
    (or with other settings) is refused, unless ``restart`` (which trains anew).
    """
    run_dir = Path(run_dir)
    wanted = {key: list(split[key]) for key in ("train", "val", "test")}
    saved = run_dir / SPLIT_FILE
    if saved.is_file() and not restart and json.loads(saved.read_text()) != wanted:
        raise AtomSetsError(f"{run_dir} holds a run on other ids (other sizes, seed, fold, protocol or data): "
                            "use a new output folder, or --restart (restart=True) to discard it")
    fingerprint = expected_fingerprint(table, model, training=training, model_config=model_config,
                                       features_from=features_from, split=wanted)
    metrics = None if restart else finished_run(run_dir, fingerprint)
    if metrics is None:
        write_json_atomic(saved, wanted)
        metrics = run_model(table, model, training=training, model_config=model_config, out_dir=run_dir,
                            progress=progress, features_from=features_from, split=wanted, restart=restart).metrics
    return metrics


def run_record(
    training: TrainingConfig,
    budget_epochs: int | None,
    model_config: ModelConfig | None,
    features_from: str | None,
    command: str | None,
) -> dict:
    """The settings, command line and package versions a result file records."""
    return {"training": asdict(training), "budget_epochs": budget_epochs,
            "model_config": asdict(model_config or ModelConfig()), "features_from": features_from,
            "command": command or " ".join(["atomsets-tf", *sys.argv[1:]]),
            "versions": {**versions(), **optional_versions()}}


def new_figure(n_panels: int = 1, width: float = 6.0, height: float = 4.5):
    """A matplotlib ``(Figure, axes)`` drawn with the Agg backend (no global pyplot state), or None without matplotlib."""
    try:
        return plots.new_figure(n_panels, width, height)
    except PlotsUnavailableError as exc:
        warnings.warn(f"{exc}: no plot written", stacklevel=3)
        return None


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically."""
    return plots.save_figure(fig, path)


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in [header, *rows]]


def default_batch_size(n_entries: int) -> int:
    """16 below 1000 entries (chosen on steels by validation MAE), 128 below 50k, 512 above."""
    if n_entries < 1000:
        return 16
    return 128 if n_entries < 50_000 else 512


def default_training(n_entries: int, budget_epochs: int | None = None, **overrides) -> TrainingConfig:
    """The benchmark's optimisation settings: the paper's 1000 epochs and patience 200, capped by ``budget_epochs``."""
    training = TrainingConfig(epochs=1000, patience=200, batch_size=default_batch_size(n_entries))
    training = replace(training, **{k: v for k, v in overrides.items() if v is not None})
    return capped(training, budget_epochs)


def capped(training: TrainingConfig, budget_epochs: int | None) -> TrainingConfig:
    """``training`` with at most ``budget_epochs`` epochs (unchanged when ``budget_epochs`` is None)."""
    return training if budget_epochs is None else replace(training, epochs=min(training.epochs, budget_epochs))


def data_name(table: data_io.Table) -> str:
    return table.meta.get("task") or Path(table.source).name


def fold_columns(path: Path, columns: tuple[str, ...], test_ids: list[str] | None = None) -> dict[str, list | None]:
    """Columns of a run's ``test_predictions.csv``, read once: each as floats in the order of ``test_ids``
    (``None``: the file's order), or None for a column the file lacks (an ensemble's ``std``)."""
    with open(path / "test_predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if test_ids is not None:
        by_id = {row["id"]: row for row in rows}
        rows = [by_id[i] for i in test_ids]
    return {c: ([float(row[c]) for row in rows] if not rows or c in rows[0] else None) for c in columns}


def fold_predictions(path: Path, test_ids: list[str] | None, column: str = "prediction") -> list[float] | None:
    """One column of :func:`fold_columns` (``prediction`` by default)."""
    return fold_columns(path, (column,), test_ids)[column]


def finished_run(path: str | os.PathLike, fingerprint: dict) -> dict | None:
    """A finished run's metrics (``metrics.json`` and no state to resume from), else None.

    ``fingerprint`` is the run a caller wants (see
    :func:`~atomsets_tf.evaluation.runners.expected_fingerprint`).

    Raises:
        RunSettingsError: ``path`` holds a run (finished or interrupted) with other settings
            (a rerun into the same folder must not mix them).
    """
    path = Path(path)
    check_run_folder(path, fingerprint)
    if not is_finished(path):
        return None
    return json.loads((path / METRICS_FILE).read_text())


def optional_versions() -> dict:
    found = {}
    for name in ("pymatgen", "matbench"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


#: The ids a run was trained on, kept beside its outputs so a resumed run can be checked.
SPLIT_FILE = "split.json"
