"""The hyperparameter grid of the AtomSets paper (Table S2), searched by k-fold cross-validation.

The search never sees test data: with the ``matbench`` protocol it runs on the
training part of one official fold; with ``paper`` on the whole data set (as
the paper did before its random test splits). The pool is shuffled and cut into
``cv_folds`` parts; each configuration trains ``cv_folds`` times, each time
early-stopping and scoring on the part it left out. The configuration with the
best mean validation metric wins; ``grid.json`` records every configuration's
mean ± std and the ``atomsets-tf benchmark`` command that runs the winner.

The full AtomSets grid has 96 configurations; ``max_configs`` draws a seeded
random subset of them (the summary says how many of how many ran).
"""

from __future__ import annotations

import itertools
import math
import os
import shlex
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from atomsets_tf.data.matbench_tasks import HIGHER_IS_BETTER
from atomsets_tf.data.splits import official_folds
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.common import (
    capped,
    data_name,
    default_training,
    finished_run,
)
from atomsets_tf.evaluation.runners import expected_fingerprint, load_task, run_model
from atomsets_tf.models.registry import entry
from atomsets_tf.training.metrics import metric_name
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils.io import output_lock, write_json_atomic
from atomsets_tf.utils.progress import reporting_bar
from atomsets_tf.workflows.fit import ModelConfig, load_targets
from atomsets_tf.workflows.outputs import versions

#: Table S2, AtomSets models.
ATOMSETS_GRID = {
    "n_layers_before_readout": (1, 2, 3),
    "n_layers_after_readout": (2, 3),
    "units": (16, 32, 64, 128),
    "readout": ("mean", "set2set"),
    "activation": ("softplus", "relu"),
}
#: Table S2, MLP models (an MLP is an AtomSets head with no layer before its trivial readout).
MLP_GRID = {
    "n_layers_after_readout": (1, 2, 3, 4, 5),
    "units": (16, 32, 64, 128),
    "activation": ("softplus", "relu"),
}
GRID_FILE = "grid.json"


def grid_for(model: str) -> dict[str, tuple]:
    """The Table S2 grid of ``model``: the MLP grid for ``mlp-*`` models, else the AtomSets grid."""
    grid = entry(model).grid
    if grid is None:
        raise AtomSetsError(f"Table S2 has no grid for {model}; the grid covers AtomSets and MLP models")
    return MLP_GRID if grid == "mlp" else ATOMSETS_GRID


def grid_configs(model: str, max_configs: int | None = None, seed: int = 0) -> dict[int, ModelConfig]:
    """``{grid index: configuration}``: all of ``model``'s grid, or a seeded random ``max_configs`` of it.

    The random subset is the first ``max_configs`` of one seeded permutation, so
    a larger ``max_configs`` extends a smaller one (and reuses its finished runs).
    """
    grid = grid_for(model)
    configs = [ModelConfig(**dict(zip(grid, values))) for values in itertools.product(*grid.values())]
    keep = range(len(configs))
    if max_configs is not None and max_configs < len(configs):
        keep = np.random.default_rng(seed).permutation(len(configs))[:max_configs]
    return {int(i): configs[i] for i in sorted(keep)}


def cv_splits(ids: list[str], cv_folds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """``cv_folds`` shuffled train/validation splits of ``ids``; each id is validated on exactly once."""
    if cv_folds < 2:
        raise AtomSetsError(f"cross-validation needs at least 2 folds, got {cv_folds}")
    if len(ids) < 2 * cv_folds:
        raise AtomSetsError(f"too few entries ({len(ids)}) for {cv_folds}-fold cross-validation")
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = np.array_split(order, cv_folds)
    splits = []
    for k, part in enumerate(parts):
        train = np.concatenate([p for j, p in enumerate(parts) if j != k])
        val = [ids[i] for i in part]
        splits.append({"train": [ids[i] for i in train], "val": val, "test": val})
    return splits


def grid_search(
    data,
    model: str,
    out_dir: str | os.PathLike,
    protocol: str = "matbench",
    fold: int = 0,
    cv_folds: int = 5,
    max_configs: int | None = None,
    budget_epochs: int | None = None,
    training: TrainingConfig | None = None,
    features_from: str | None = None,
    seed: int = 0,
    progress: bool = False,
    command: str | None = None,
    report=None,
    restart: bool = False,
    configs: dict[int, ModelConfig] | None = None,
) -> dict:
    """Cross-validate ``model``'s Table S2 configurations (or ``configs``); write and return ``grid.json``'s record.

    Each (configuration, cv fold) trains in ``out_dir/config_<i>/cv_<k>`` and
    is read back when finished, so an interrupted search resumes (``restart``
    retrains them all; a run there with other settings is refused).
    """
    configs = grid_configs(model, max_configs, seed) if configs is None else configs
    table, _, task_type = load_targets(load_task(data, model))
    if protocol == "matbench":
        pool = official_folds(data_name(table))[fold][0]
    elif protocol == "paper":
        pool = list(table.ids)
    else:
        raise AtomSetsError(f"protocol must be matbench or paper, got {protocol!r}")
    splits = cv_splits(pool, cv_folds, seed)
    training = training or default_training(len(pool), budget_epochs)
    training = capped(training, budget_epochs)
    name = metric_name(task_type)
    higher_is_better = HIGHER_IS_BETTER[name]
    out = Path(out_dir)
    with output_lock(out), reporting_bar(len(configs), f"grid {data_name(table)} {model}", "config", report) as step:
        rows = []
        for n, (i, config) in enumerate(configs.items()):
            runs = [(out / f"config_{i:02d}" / f"cv_{k}", split, replace(training, seed=seed + k))
                    for k, split in enumerate(splits)]
            scores = [_cv_run(table, model, config, where, split, run_training, features_from, progress,
                              restart)[f"val_{name}"] for where, split, run_training in runs]
            rows.append({"grid_index": i, "config": asdict(config), "mean": float(np.mean(scores)),
                         "std": float(np.std(scores)), "folds": [float(s) for s in scores]})
            if step is not None:
                step(f"config {n + 1}/{len(configs)} (grid #{i}) {_describe(config, model)}: "
                       f"val {name} {rows[-1]['mean']:.4g} ± {rows[-1]['std']:.2g}")
        best = (max if higher_is_better else min)(rows, key=lambda r: r["mean"])
        record = {
            "task": data_name(table), "model": model, "protocol": protocol,
            "fold": fold if protocol == "matbench" else None, "cv_folds": cv_folds, "metric": name,
            "n_pool": len(pool), "n_configs": len(configs),
            "n_grid": math.prod(len(v) for v in grid_for(model).values()), "budget_epochs": budget_epochs,
            "training": asdict(training), "features_from": features_from,
            "results": rows, "best": best,
            "benchmark_command": benchmark_command(data_name(table), model, best["config"], budget_epochs),
            "command": command, "versions": versions(),
        }
        write_json_atomic(out / GRID_FILE, record)
    return record


def _cv_run(table, model: str, config: ModelConfig, where: Path, split: dict, training: TrainingConfig,
            features_from: str | None, progress: bool, restart: bool) -> dict:
    """The metrics of one (configuration, cv fold) run: read back when finished with these settings, else trained."""
    wanted = expected_fingerprint(table, model, training=training, model_config=config, features_from=features_from,
                                  split=split)
    metrics = None if restart else finished_run(where, wanted)
    if metrics is None:
        metrics = run_model(table, model, training=training, model_config=config, out_dir=where, progress=progress,
                            features_from=features_from, split=split, restart=restart).metrics
    return metrics


def _describe(config: ModelConfig, model: str) -> str:
    return " ".join(f"{k}={getattr(config, k)}" for k in grid_for(model))


#: ModelConfig field -> ``atomsets-tf`` option (see the CLI's head options).
_OPTIONS = {"n_layers_before_readout": "--layers-before", "n_layers_after_readout": "--layers-after",
            "units": "--units", "readout": "--readout", "activation": "--activation"}


def benchmark_command(task: str, model: str, config: dict, budget_epochs: int | None = None) -> str:
    """The ``atomsets-tf benchmark`` command that evaluates ``config`` on the official folds."""
    args = ["atomsets-tf", "benchmark", task, "--model", model]
    for field, option in _OPTIONS.items():
        if field in grid_for(model):
            value = config[field]
            args += [option, "+".join(value) if isinstance(value, list) else str(value)]
    if budget_epochs is not None:
        args += ["--epochs", str(budget_epochs)]
    return shlex.join([*args, "-o", f"runs/{task}/{model}-tuned"])
