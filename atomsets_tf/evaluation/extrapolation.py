"""Extrapolation to large targets (AtomSets paper, Fig. 4 and Fig. S3).

The entries whose target lies above the ``quantile`` (default 0.9) of the
task's targets are never trained on: they are the *extrapolation* half of the
test set. An equal number of entries drawn at random from below the quantile
is the *interpolation* half. Training and validation (10 %, at least one
entry) share the rest, all below the quantile. Each model trains once on that
split, in ``OUTDIR/<model>`` (resumable, as in
:mod:`~atomsets_tf.evaluation.learning_curve`), and is scored by its MAE on
each half. ``OUTDIR/extrapolation.json`` holds the figures and
``OUTDIR/extrapolation.png`` the absolute error against the target value, a
panel per model, with the quantile drawn as a vertical line (as Fig. S3).
Regression tasks only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.splits import split_off_validation
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.common import (
    TARGET_UNITS,
    TrainingSpec,
    check_models,
    data_name,
    fold_predictions,
    new_figure,
    run_record,
    save_figure,
    task_tables,
    text_table,
    train_on_split,
    training_for,
)
from atomsets_tf.training.metrics import mae
from atomsets_tf.utils.io import output_lock, write_json_atomic
from atomsets_tf.utils.progress import reporting_bar
from atomsets_tf.workflows.fit import ModelConfig, load_targets

EXTRAPOLATION_JSON = "extrapolation.json"
EXTRAPOLATION_PNG = "extrapolation.png"


def extrapolation_split(
    targets: Sequence[float] | np.ndarray,
    ids: Sequence[str],
    quantile: float = 0.9,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> dict:
    """The split of the extrapolation experiment, as ids.

    Returns ``{"train", "val", "test", "interpolation", "extrapolation"}`` (id
    lists; ``test`` is interpolation + extrapolation), ``"threshold"`` (the
    ``quantile`` of ``targets``, in target units) and ``"quantile"``.
    ``extrapolation`` holds every entry whose target is above the threshold;
    ``interpolation`` as many entries drawn (with ``seed``) from below it;
    ``train`` and ``val`` (``val_fraction`` of them, at least 1) the rest.

    Raises:
        AtomSetsError: ``quantile`` outside [0.5, 1), no target above the
            threshold, or too few entries left to train on.
    """
    targets = np.asarray(targets, dtype=np.float64).ravel()
    ids = list(ids)
    if len(ids) != len(targets):
        raise AtomSetsError(f"{len(ids)} ids but {len(targets)} targets")
    if not 0.5 <= quantile < 1:
        raise AtomSetsError(f"the quantile must be in [0.5, 1), got {quantile}")
    threshold = float(np.quantile(targets, quantile))
    above = np.flatnonzero(targets > threshold)
    below = np.flatnonzero(targets <= threshold)
    if len(above) == 0:
        raise AtomSetsError(f"no target lies above the {quantile:g} quantile ({threshold:g})")
    shuffled = np.random.default_rng(seed).permutation(below)
    interpolation, rest = np.sort(shuffled[: len(above)]), np.sort(shuffled[len(above):])
    if len(rest) < 2:
        raise AtomSetsError(f"too few entries ({len(ids)}) for an extrapolation split at the {quantile:g} quantile")
    train, val = split_off_validation(rest, val_fraction, seed=seed)

    def pick(indices: np.ndarray) -> list[str]:
        return [ids[i] for i in indices]

    return {"train": pick(train), "val": pick(val), "test": pick(np.concatenate([interpolation, above])),
            "interpolation": pick(interpolation), "extrapolation": pick(above),
            "threshold": threshold, "quantile": float(quantile)}


def extrapolation(
    data: str | os.PathLike | data_io.Table,
    models: str | Sequence[str],
    out_dir: str | os.PathLike,
    quantile: float = 0.9,
    training: TrainingSpec = None,
    budget_epochs: int | None = None,
    model_config: ModelConfig | None = None,
    features_from: str | None = None,
    seed: int = 0,
    progress: bool = False,
    command: str | None = None,
    report: Callable[[str], None] | None = None,
    restart: bool = False,
) -> dict:
    """Train each model once on :func:`extrapolation_split`; its MAE on the interpolation and extrapolation halves.

    Args:
        data: a matbench task name with local data, a data file, or a table (regression).
        models: names of :func:`~atomsets_tf.evaluation.runners.benchmark_models`.
        out_dir: where the runs, ``extrapolation.json`` and ``extrapolation.png`` go.
        quantile: targets above this quantile form the extrapolation test half.
        training: settings, or a function of the number of training + validation
            entries; default :func:`~atomsets_tf.evaluation.protocol.default_training`.
        budget_epochs: cap on epochs.
        seed: seed of the split (the weights' seed is ``training.seed``).
        report: called with one line per finished model.
        restart: retrain every model, discarding what ``out_dir`` holds.

    Returns:
        The summary written to ``extrapolation.json`` (MAEs in target units).
    """
    models = check_models(models)
    tables = task_tables(data, models)
    first = tables[models[0]]
    _, targets, task_type = load_targets(first)
    task = data_name(first)
    if task_type != "regression":
        raise AtomSetsError(f"the extrapolation experiment needs a regression task; {task} is {task_type}")
    split = extrapolation_split(targets, first.ids, quantile, seed)
    config = training_for(training, len(split["train"]) + len(split["val"]), budget_epochs)
    by_id = dict(zip(first.ids, targets))
    out = Path(out_dir)
    start = time.perf_counter()
    results, errors = {}, {}
    with output_lock(out), reporting_bar(len(models), f"extrapolation {task}", "model", report) as step:
        for model in models:
            metrics = train_on_split(tables[model], model, split, out / model, config, model_config, features_from,
                                     progress, restart)
            predictions = dict(zip(split["test"], fold_predictions(out / model, split["test"])))
            errors[model] = {i: abs(predictions[i] - by_id[i]) for i in split["test"]}
            results[model] = _halves_record(metrics, predictions, by_id, split)
            if step is not None:
                step(f"{task} {model}: MAE interpolation {results[model]['mae_interpolation']:.4g}, extrapolation "
                       f"{results[model]['mae_extrapolation']:.4g} ({metrics['epochs_run']} epochs, "
                       f"{metrics.get('wall_time_s') or 0:.0f} s)")
        summary = {**_split_record(first, task, split, quantile, seed), "models": results,
                   "wall_time_s": round(time.perf_counter() - start, 3),
                   **run_record(config, budget_epochs, model_config, features_from, command)}
        write_json_atomic(out / EXTRAPOLATION_JSON, summary)
        plot_extrapolation(summary, errors, by_id, out / EXTRAPOLATION_PNG)
    return summary


def _split_record(table, task: str, split: Mapping, quantile: float, seed: int) -> dict:
    """What ``extrapolation.json`` records of the data and the split."""
    return {"task": task, "target": table.target_name, "unit": TARGET_UNITS.get(task), "quantile": float(quantile),
            "threshold": split["threshold"], "seed": seed, "n_entries": len(table), "n_train": len(split["train"]),
            "n_val": len(split["val"]), "n_interpolation": len(split["interpolation"]),
            "n_extrapolation": len(split["extrapolation"])}


def _halves_record(metrics: Mapping, predictions: Mapping[str, float], targets: Mapping[str, float],
                   split: Mapping) -> dict:
    """One model's record: its MAE on the interpolation and the extrapolation halves of the test set, and their ratio."""
    interpolation = mae([targets[i] for i in split["interpolation"]], [predictions[i] for i in split["interpolation"]])
    extrapolated = mae([targets[i] for i in split["extrapolation"]], [predictions[i] for i in split["extrapolation"]])
    return {"mae_interpolation": interpolation, "mae_extrapolation": extrapolated, "mae_test": metrics["test_mae"],
            "val_mae": metrics["val_mae"],
            "extrapolation_over_interpolation": extrapolated / interpolation if interpolation else None,
            "epochs_run": metrics["epochs_run"], "wall_time_s": metrics.get("wall_time_s")}


def plot_extrapolation(
    summary: Mapping, errors: Mapping[str, Mapping[str, float]], targets: Mapping[str, float], path: str | os.PathLike
) -> Path | None:
    """Absolute test error against target value, a panel per model, the quantile as a vertical line (Fig. S3).

    ``errors``: per model, ``{id: |prediction - target|}``; ``targets``: ``{id: target}``.
    Returns the PNG's path, or None when matplotlib is missing.
    """
    made = new_figure(len(errors), width=4.5, height=4.0)
    if made is None:
        return None
    fig, axes = made
    unit = summary.get("unit")
    suffix = f" ({unit})" if unit else ""
    for k, (ax, (model, by_id)) in enumerate(zip(axes, errors.items())):
        record = summary["models"][model]
        ax.scatter([targets[i] for i in by_id], list(by_id.values()), s=12, color=f"C{k % 10}", alpha=0.7)
        ax.axvline(summary["threshold"], color="grey", linestyle="--",
                   label=f"{100 * summary['quantile']:g} % quantile")
        ax.set_title(f"{model}\nMAE interp. {record['mae_interpolation']:.3g}, "
                     f"extrap. {record['mae_extrapolation']:.3g}", fontsize=9)
        ax.set_xlabel(f"{summary['target']}{suffix}")
        ax.set_ylabel(f"absolute error{suffix}")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def format_extrapolation(summary: Mapping) -> str:
    """A plain-text table of an :func:`extrapolation` summary: MAE per model on each half."""
    unit = f" ({summary['unit']})" if summary.get("unit") else ""
    value = f"{summary['threshold']:.4g} {summary['unit'] or ''}".strip()
    header = ["model", f"MAE interpolation{unit}", f"MAE extrapolation{unit}", "ratio"]
    rows = [[m, f"{r['mae_interpolation']:.4g}", f"{r['mae_extrapolation']:.4g}",
             "-" if r["extrapolation_over_interpolation"] is None else f"{r['extrapolation_over_interpolation']:.2f}"]
            for m, r in summary["models"].items()]
    lines = text_table(header, rows)
    lines.append(f"{summary['task']}: test = {summary['n_interpolation']} entries below and "
                 f"{summary['n_extrapolation']} above the {summary['quantile']:g} quantile ({value})")
    return "\n".join(lines)
