"""Model selection by nested cross-validation: per official fold, candidates are compared by an inner
cross-validation on that fold's training part only, and the winner is trained and scored on the fold.

A test fold is never looked at to choose anything: the choice of each fold is made before its test part is
predicted, on data the official fold puts in training. ``OUTDIR/fold_<k>/selection`` holds the inner search
(:func:`~atomsets_tf.evaluation.grid.grid_search`, resumable), ``OUTDIR/fold_<k>/final`` the winner's run, and
``OUTDIR/selection.json`` the choices and the scores.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.common import capped, data_name, default_training, finished_run
from atomsets_tf.evaluation.grid import grid_search
from atomsets_tf.evaluation.runners import expected_fingerprint, load_task, run_model
from atomsets_tf.training.metrics import metric_name
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils.io import write_json_atomic
from atomsets_tf.workflows.fit import ModelConfig, load_targets

SELECTION_FILE = "selection.json"


def nested_selection(
    data,
    model: str,
    candidates: dict[str, ModelConfig],
    out_dir: str | os.PathLike,
    folds: list[int] | None = None,
    cv_folds: int = 3,
    budget_epochs: int | None = None,
    training: TrainingConfig | None = None,
    features_from: str | None = None,
    report=None,
) -> dict:
    """Choose among ``candidates`` on each official fold's training part, then train and score the choice.

    Args:
        data: a matbench task name (or its file).
        model: a model :func:`~atomsets_tf.workflows.fit.fit` trains.
        candidates: ``{name: ModelConfig}``, the variants compared (outputs, ensembles, architectures, ...).
        out_dir: where everything goes (resumable).
        folds: the official folds (default all five).
        cv_folds: parts of each fold's training part in the inner cross-validation.
        budget_epochs, training: as for :func:`~atomsets_tf.evaluation.protocol.run_benchmark`; fold k's
            final run has seed ``training.seed + k``.

    Returns:
        ``selection.json``'s record: per fold the candidate chosen, its inner-CV score, and its validation and
        test metric; the mean and std of the test metric over the folds.
    """
    if not candidates:
        raise AtomSetsError("nested selection needs at least one candidate")
    names = list(candidates)
    table, _, task_type = load_targets(load_task(data, model))
    training = capped(training or default_training(len(table), budget_epochs), budget_epochs)
    metric, out = metric_name(task_type), Path(out_dir)
    rows = []
    for fold in folds if folds is not None else range(5):
        inner = grid_search(table, model, out / f"fold_{fold}" / "selection", fold=fold, cv_folds=cv_folds,
                            budget_epochs=budget_epochs, training=training, features_from=features_from,
                            configs=dict(enumerate(candidates.values())))
        chosen = names[inner["best"]["grid_index"]]
        final = replace(training, seed=training.seed + fold)
        where = out / f"fold_{fold}" / "final"
        wanted = expected_fingerprint(table, model, "matbench", fold, final, candidates[chosen], features_from)
        metrics = finished_run(where, wanted) or run_model(table, model, "matbench", fold, final, candidates[chosen],
                                                           where, features_from=features_from).metrics
        rows.append({"fold": fold, "chosen": chosen, "inner_cv": inner["best"]["mean"],
                     "inner_cv_all": {names[r["grid_index"]]: r["mean"] for r in inner["results"]},
                     "val": metrics[f"val_{metric}"], "test": metrics[f"test_{metric}"]})
        if report is not None:
            report(f"{data_name(table)} fold {fold}: chose {chosen} (inner CV {metric} {rows[-1]['inner_cv']:.4g}); "
                   f"test {metric} {rows[-1]['test']:.4g}")
    tests = np.array([r["test"] for r in rows])
    record = {"task": data_name(table), "model": model, "metric": metric, "cv_folds": cv_folds,
              "candidates": {n: asdict(c) for n, c in candidates.items()}, "folds": rows,
              "mean": float(tests.mean()), "std": float(tests.std()), "training": asdict(training),
              "budget_epochs": budget_epochs}
    write_json_atomic(out / SELECTION_FILE, record)
    return record
