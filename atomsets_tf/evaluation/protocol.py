"""One model on one task, over all folds of a protocol: what ``atomsets-tf benchmark`` runs.

Protocols:

* ``matbench``: the five official Matbench v0.1 folds; validation (for early
  stopping) is 10 % of each fold's training part; the test part is never seen
  before scoring.
* ``paper``: five random 80/10/10 splits (seeds 0-4), early-stopping patience
  200, as in the AtomSets paper.

Each fold is trained in ``OUTDIR/fold_<k>`` (resumable: a finished fold is
read back, an interrupted one resumes), and ``OUTDIR/summary.json`` holds
per-fold metrics, mean ± std (population std over folds), wall time, the
command and package versions. With matbench importable, the official-fold
predictions are also written through ``MatbenchBenchmark.to_file``
(``OUTDIR/matbench_results.json.gz``), ready to submit.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.inputs import DataLike
from atomsets_tf.data.splits import PROTOCOLS, TASK_SUBSET, as_task_subset
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.common import (
    capped,
    data_name,
    default_batch_size,
    default_training,
    finished_run,
    fold_columns,
    optional_versions,
)
from atomsets_tf.evaluation.reference import reference_row, to_paper_units
from atomsets_tf.evaluation.runners import benchmark_models, expected_fingerprint, load_task, run_model
from atomsets_tf.training.metrics import metric_name, task_type_of
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils.io import output_lock, write_json_atomic
from atomsets_tf.utils.progress import reporting_bar
from atomsets_tf.workflows.fit import ModelConfig
from atomsets_tf.workflows.outputs import target_label, versions, write_test_plot

#: Public names (``default_batch_size`` and ``default_training`` live in :mod:`~atomsets_tf.evaluation.common`).
__all__ = ["MATBENCH_RESULTS", "N_FOLDS", "SUMMARY", "default_batch_size", "default_training", "fold_dir",
           "run_benchmark", "summarise", "write_matbench_results"]

N_FOLDS = 5
SUMMARY = "summary.json"
MATBENCH_RESULTS = "matbench_results.json.gz"


def fold_dir(out_dir: str | os.PathLike, fold: int) -> Path:
    return Path(out_dir) / f"fold_{fold}"


def run_benchmark(
    task: DataLike,
    model: str,
    out_dir: str | os.PathLike,
    protocol: str = "matbench",
    folds: list[int] | None = None,
    budget_epochs: int | None = None,
    training: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    features_from: str | None = None,
    progress: bool = False,
    command: str | None = None,
    report=None,
    restart: bool = False,
    official_task: str | None = None,
    element_features: list[str] | None = None,
) -> dict:
    """Train and score ``model`` on ``task`` over ``folds`` (default all five); returns the summary.

    Args:
        task: a matbench task name with local data, or a data file (``paper``
            protocol, or a file that names a matbench task's ids).
        model: a name of :func:`~atomsets_tf.evaluation.runners.benchmark_models`.
        out_dir: where the folds and ``summary.json`` go (locked while this runs).
        protocol: ``"matbench"`` or ``"paper"``.
        budget_epochs: cap on epochs (stated in the summary), for tasks too large to train in full.
        training: optimisation settings; default :func:`default_training`. The
            seed of fold ``k`` is ``training.seed + k``.
        command: the command line to record (default: this process's).
        report: called with each fold's result line (default: nothing); given, a bar over the folds is
            drawn on stderr (:func:`~atomsets_tf.utils.progress.reporting_bar`).
        restart: retrain every fold, discarding what the folds hold (else a fold
            finished with the same settings is read back, and one with other settings refused).
        element_features: the V0 sources of ``atomsets-v0`` (see :func:`~atomsets_tf.workflows.fit.fit`).
        official_task: the Matbench task whose entries ``task`` (a file) holds some of: the ``matbench``
            protocol then uses its official folds restricted to the file's ids, and the summary reports
            the task (see :func:`~atomsets_tf.data.splits.as_task_subset`).

    Raises:
        AtomSetsError: an unknown model, protocol or fold; with ``official_task``, a task without
            official folds or an id that is not one of its entries.
    """
    if model not in benchmark_models():
        raise AtomSetsError(f"unknown model {model!r}; choose one of {', '.join(benchmark_models())}")
    if protocol not in PROTOCOLS:
        raise AtomSetsError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    folds = list(range(N_FOLDS)) if folds is None else sorted(set(folds))
    if not folds or not all(0 <= f < N_FOLDS for f in folds):
        raise AtomSetsError(f"folds must be in 0..{N_FOLDS - 1}, got {folds}")
    table = load_task(task, model)
    if official_task is not None:
        table = as_task_subset(table, official_task)
    training = training or default_training(len(table), budget_epochs)
    training = capped(training, budget_epochs)
    out = Path(out_dir)
    with output_lock(out), reporting_bar(len(folds), f"{data_name(table)} {model}", "fold", report) as step:
        runs = [_benchmark_fold(table, model, protocol, fold, replace(training, seed=training.seed + fold),
                                model_config, features_from, out, progress, restart, step, element_features)
                for fold in folds]
        summary = summarise(table, model, protocol, runs, training, budget_epochs, model_config, features_from,
                            command, element_features)
        summary["plots"] = write_benchmark_plot(table, model, out, folds, summary["metric"])
        if protocol == "matbench" and folds == list(range(N_FOLDS)) and not table.meta.get(TASK_SUBSET):
            written = write_matbench_results(table, out)
            summary["matbench_results"] = None if written is None else written.name
        write_json_atomic(out / SUMMARY, summary)
    return summary


def _benchmark_fold(table, model, protocol, fold, training, model_config, features_from, out, progress, restart,
                    report, element_features=None) -> dict:
    """One fold of :func:`run_benchmark` (trained, or read back when finished): its ``summary.json`` row."""
    start = time.perf_counter()
    fingerprint = expected_fingerprint(table, model, protocol, fold, training, model_config, features_from,
                                       element_features=element_features)
    metrics = None if restart else finished_run(fold_dir(out, fold), fingerprint)
    if metrics is None:
        metrics = run_model(table, model, protocol, fold, training, model_config, fold_dir(out, fold), progress,
                            features_from, restart=restart, element_features=element_features).metrics
    name = metric_name(metrics["task_type"])
    row = {
        "fold": fold, "metric": name, "test": metrics[f"test_{name}"], "val": metrics[f"val_{name}"],
        "n_train": metrics["n_train"], "n_val": metrics["n_val"], "n_test": metrics["n_test"],
        "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
        "wall_time_s": metrics.get("wall_time_s", round(time.perf_counter() - start, 3)),
    }
    for key in ("output", "ensemble"):
        if metrics.get(key) is not None:
            row[key] = metrics[key]
    if "uncertainty" in metrics:  # an ensemble: its test-fold uncertainty scores, raw and rescaled on validation
        row["uncertainty"], row["uncertainty_raw"] = metrics["uncertainty"]["test"], metrics["uncertainty"]["test_raw"]
        row["std_scale"] = metrics["std_scale"]
    if report is not None:
        report(f"{data_name(table)} {model} fold {fold}: test {name} {row['test']:.4g} "
               f"({row['epochs_run']} epochs, {row['wall_time_s']:.0f} s)")
    return row


def write_benchmark_plot(table: data_io.Table, model: str, out: Path, folds: list[int], metric: str) -> dict:
    """The parity plot (``parity.png``) or ROC (``roc.png``) of all folds' test predictions together, in ``out``.

    Reads each fold's ``test_predictions.csv``. Returns the file name by kind, as ``summary.json`` records it
    (``{}`` without matplotlib, with a warning).
    """
    columns = [fold_columns(fold_dir(out, fold), ("target", "prediction")) for fold in folds]
    targets = [y for c in columns for y in c["target"]]
    predictions = [y for c in columns for y in c["prediction"]]
    task_type = task_type_of(metric)
    title = f"{model} on {data_name(table)}: test sets of {len(folds)} fold{'s' if len(folds) > 1 else ''}"
    return write_test_plot(out, task_type, np.array(targets), np.array(predictions), title=title,
                           **target_label(table, task_type))


def summarise(table, model, protocol, runs, training, budget_epochs, model_config, features_from, command,
              element_features=None) -> dict:
    """The ``summary.json`` record: per-fold metrics, mean ± std, the reference figures, the command."""
    values = np.array([r["test"] for r in runs], dtype=np.float64)
    task = data_name(table)
    summary = {
        "task": task, "model": model, "protocol": protocol, "metric": runs[0]["metric"],
        "n_entries": len(table), "folds": runs,
        "mean": float(values.mean()), "std": float(values.std()), "n_folds": len(runs),
        "budget_epochs": budget_epochs, "training": asdict(training),
        "model_config": asdict(model_config or ModelConfig()), "features_from": features_from,
        "element_features": element_features,
        "wall_time_s": float(sum(r["wall_time_s"] for r in runs)),
        "command": command or " ".join(["atomsets-tf", *sys.argv[1:]]),
        "versions": {**versions(), **optional_versions()},
    }
    for key in ("uncertainty", "uncertainty_raw"):
        if all(key in r for r in runs):
            summary[key] = {name: float(np.mean([r[key][name] for r in runs])) for name in runs[0][key]}
    if table.meta.get(TASK_SUBSET):
        summary["subset"] = {"source": str(table.source), "n_entries": len(table)}
    reference = reference_row(task, model)
    if reference is not None:
        summary["paper_units"] = {"mean": to_paper_units(task, summary["mean"]),
                                  "std": to_paper_units(task, summary["std"])}
        summary["reference"] = reference
    return summary


def write_matbench_results(table: data_io.Table, out: Path) -> Path | None:
    """Record the five folds' test predictions in matbench and write ``MatbenchBenchmark.to_file``.

    Needs matbench importable (``pip install matminer`` then ``pip install --no-deps matbench==0.6``); the
    task's data is given to matbench from ``table`` (no download), the folds are matbench's own. A regression
    ensemble's ``std`` is recorded as matbench's uncertainty. Returns the file, or None (with a warning) when matbench is
    missing or refuses the results.
    """
    try:
        from matbench.bench import MatbenchBenchmark  # optional: the `matbench` install of the README
    except ImportError:
        warnings.warn("matbench is not installed, so no matbench_results.json.gz: pip install matminer, then "
                      "pip install --no-deps matbench==0.6", stacklevel=2)
        return None
    import pandas as pd

    task = data_name(table)
    try:
        bench = MatbenchBenchmark(autoload=False, subset=[task])
        mb_task = bench.tasks_map[task]
        meta = mb_task.metadata
        mb_task.df = pd.DataFrame({meta.input_type: list(table.inputs), meta.target: table.targets},
                                  index=table.ids)
        for fold in mb_task.folds:
            test_ids = mb_task.validation[mb_task.folds_map[fold]].test
            columns = fold_columns(fold_dir(out, fold), ("prediction", "std"), test_ids)  # a classifier: probabilities
            # matbench takes an uncertainty for regression only
            std = columns["std"] if meta.task_type == "regression" else None
            mb_task.record(fold, columns["prediction"], std=std)
        path = out / MATBENCH_RESULTS
        bench.to_file(str(path))
        return path
    except Exception as exc:  # matbench's own validation: report, keep our results
        warnings.warn(f"matbench did not accept the results ({type(exc).__name__}: {exc})", stacklevel=2)
        return None


