"""Learning curves: test error against data size, with a power-law fit (CGAT paper, Fig. 3-4).

The test set is fixed: the official fold's test part (``matbench``) or a random
10 % (``paper``, split ``fold``). The rest of the task is the *pool*. For every
data size N a random subset of N pool entries is drawn; the subsets are
nested (the 200 hold the 100) and 10 % of each (at least one entry) is its
validation part, for early stopping. N counts training + validation entries,
and is what the power law is fitted against:

    log10(error) = intercept + slope * log10(N)

by ordinary least squares. The error is the test MAE (in the target's units)
for regression, and 1 - ROC-AUC for classification (lower is better in both,
and both fall towards 0 as N grows, so the same fit applies).

Each (model, N) trains in ``OUTDIR/<model>/n_<N>`` (resumable: a run with a
``metrics.json`` is finished and read back; ``split.json`` records its ids, and a
folder trained on other ids is refused). ``OUTDIR/learning_curve.json`` holds
the points, the fit of every model, every model's improvement over the first
one (``100 * (error_first - error_model) / error_first``, as the CGAT paper
reports transfer against no transfer: put the baseline first) and, with a
target error, the N each fit needs to reach it. ``OUTDIR/learning_curve.png``
draws it on log-log axes (needs matplotlib; skipped with a warning without it).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.splits import PROTOCOLS, make_splits, split_off_validation
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.common import (
    TARGET_UNITS,
    TrainingSpec,
    check_models,
    data_name,
    new_figure,
    run_record,
    save_figure,
    task_tables,
    text_table,
    train_on_split,
    training_for,
)
from atomsets_tf.training.metrics import metric_name
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils.io import output_lock, write_json_atomic
from atomsets_tf.utils.progress import reporting_bar
from atomsets_tf.workflows.fit import ModelConfig, load_targets

LEARNING_CURVE_JSON = "learning_curve.json"
LEARNING_CURVE_PNG = "learning_curve.png"
#: The first data size of :func:`default_sizes`.
FIRST_SIZE = 100


@dataclass
class PowerLawFit:
    """A fitted power law ``error = 10**intercept * N**slope`` (base-10 logarithms).

    Attributes:
        slope: d log10(error) / d log10(N); negative for a decreasing curve.
        intercept: log10 of the error at N = 1 (log10 of the error's units).
        slope_std, intercept_std: their 1-sigma standard errors (NaN with two points).
        covariance: the 2x2 covariance of ``(slope, intercept)``, in that order.
        n_points: how many (N, error) points were fitted.
    """

    slope: float
    intercept: float
    slope_std: float
    intercept_std: float
    covariance: np.ndarray
    n_points: int

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted error at data size ``n`` (entries), in the error's units."""
        out = np.power(10.0, self.intercept + self.slope * np.log10(np.asarray(n, dtype=np.float64)))
        return float(out) if np.ndim(out) == 0 else out

    def n_for(self, target: float) -> tuple[float, float, float]:
        """The data size at which the fit reaches the error ``target``: ``(n, n_low, n_high)``.

        ``n_low``/``n_high`` are a 1-sigma interval from the parameters'
        covariance, propagated to first order to log10(N) (so symmetric in
        log10(N)); NaN when the fit has no uncertainty (two points).

        Raises:
            AtomSetsError: ``target`` is not positive, or the curve does not
                decrease (slope >= 0), so no data size reaches a lower error.
        """
        if not target > 0:
            raise AtomSetsError(f"the target error must be positive, got {target}")
        if not self.slope < 0:
            raise AtomSetsError(f"the learning curve does not decrease (slope {self.slope:.3g} >= 0): "
                                f"no data size is predicted to reach an error of {target:g}")
        log_n = (math.log10(target) - self.intercept) / self.slope
        gradient = np.array([-log_n / self.slope, -1.0 / self.slope])  # d log_n / d (slope, intercept)
        sigma = math.sqrt(max(float(gradient @ np.asarray(self.covariance) @ gradient), 0.0))
        return _pow10(log_n), _pow10(log_n - sigma), _pow10(log_n + sigma)

    def to_dict(self) -> dict:
        """A JSON-ready record (non-finite numbers as ``None``)."""
        return {"slope": _finite(self.slope), "intercept": _finite(self.intercept),
                "slope_std": _finite(self.slope_std), "intercept_std": _finite(self.intercept_std),
                "covariance": [[_finite(v) for v in row] for row in np.asarray(self.covariance)],
                "n_points": self.n_points}

    @classmethod
    def from_dict(cls, record: Mapping) -> PowerLawFit:
        """The inverse of :meth:`to_dict`."""
        nan = float("nan")
        cov = np.array([[nan if v is None else v for v in row] for row in record["covariance"]], dtype=np.float64)
        return cls(record["slope"], record["intercept"], _nan_if_none(record["slope_std"]),
                   _nan_if_none(record["intercept_std"]), cov, record["n_points"])


def _pow10(x: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.power(10.0, x))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def fit_power_law(sizes: Sequence[float], errors: Sequence[float]) -> PowerLawFit:
    """Least-squares fit of ``log10(error) = intercept + slope * log10(N)``.

    The covariance is the standard OLS one, ``s**2 (X^T X)^-1`` with the residual
    variance ``s**2 = RSS / (n - 2)``; it needs three points or more (NaN with two).

    Raises:
        AtomSetsError: fewer than two points, fewer than two distinct sizes,
            or a size or error that is not a finite positive number.
    """
    x = np.asarray(sizes, dtype=np.float64).ravel()
    y = np.asarray(errors, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise AtomSetsError(f"{len(x)} sizes but {len(y)} errors")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and (y > 0).all()):
        raise AtomSetsError("a power law needs finite positive sizes and errors")
    if len(np.unique(x)) < 2:
        raise AtomSetsError(f"a power law needs at least two distinct data sizes, got {sorted(set(x.tolist()))}")
    n = len(x)
    if n > 2:  # numpy's covariance is the OLS one, scaled by RSS / (n - 2)
        coef, covariance = np.polyfit(np.log10(x), np.log10(y), 1, cov=True)
    else:  # (polyfit refuses to scale the covariance of an exact fit)
        coef, covariance = np.polyfit(np.log10(x), np.log10(y), 1), np.full((2, 2), np.nan)
    slope_std, intercept_std = np.sqrt(np.diag(covariance))
    return PowerLawFit(float(coef[0]), float(coef[1]), float(slope_std), float(intercept_std), covariance, n)


def default_sizes(n_train_max: int) -> list[int]:
    """100, 200, 400, ... (doubling, below ``n_train_max``), then ``n_train_max`` itself."""
    if n_train_max < 2:
        raise AtomSetsError(f"a learning curve needs at least 2 entries to train on, got {n_train_max}")
    sizes, n = [], FIRST_SIZE
    while n < n_train_max:
        sizes.append(n)
        n *= 2
    return [*sizes, int(n_train_max)]


def parse_sizes(text: str) -> list[int]:
    """Data sizes from a comma-separated list such as ``"100,200,400"``."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise AtomSetsError(f"sizes must be comma-separated whole numbers such as 100,200,400, got {text!r}") from None
    if not sizes:
        raise AtomSetsError(f"no sizes in {text!r}")
    return sizes


def check_sizes(sizes: Sequence[int], n_pool: int) -> list[int]:
    """``sizes`` sorted without repeats, each checked to lie in ``2..n_pool`` (one training and one validation entry)."""
    sizes = sorted({int(n) for n in sizes})
    bad = [n for n in sizes if not 2 <= n <= n_pool]
    if not sizes or bad:
        raise AtomSetsError(f"data sizes must be between 2 and the {n_pool} entries outside the test set, got {bad}")
    return sizes


def nested_splits(
    table: data_io.Table,
    sizes: Sequence[int] | None = None,
    protocol: str = "matbench",
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> dict[int, dict[str, list[str]]]:
    """``{N: {"train", "val", "test"}}`` (ids): one fixed test set, nested random subsets of the rest.

    The test set is the official fold's test part (``matbench``) or the random
    split ``fold``'s 10 % test part (``paper``). The pool (the rest) is shuffled
    once with ``seed`` and subset N is its first N entries; ``val_fraction`` of
    each subset (at least 1) is its validation part. Default sizes:
    :func:`default_sizes` of the pool.
    """
    train, val, test = make_splits(table, protocol, fold, seed, 0.1)
    pool = np.random.default_rng(seed).permutation(np.sort(np.concatenate([train, val])))
    sizes = check_sizes(default_sizes(len(pool)) if sizes is None else sizes, len(pool))
    test_ids = [table.ids[i] for i in np.sort(test)]
    splits = {}
    for n in sizes:
        tr, va = split_off_validation(pool[:n], val_fraction, seed=seed)
        splits[n] = {"train": [table.ids[i] for i in tr], "val": [table.ids[i] for i in va], "test": test_ids}
    return splits


def error_label(task: str, task_type: str) -> str:
    """The y-axis label of a learning curve: test MAE with its unit, or 1 - ROC-AUC."""
    if task_type == "classification":
        return "1 − test ROC-AUC"
    unit = TARGET_UNITS.get(task)
    return f"test MAE ({unit})" if unit else "test MAE"


def learning_curve(
    data: str | os.PathLike | data_io.Table,
    models: str | Sequence[str],
    out_dir: str | os.PathLike,
    sizes: Sequence[int] | None = None,
    protocol: str = "matbench",
    fold: int = 0,
    training: TrainingSpec = None,
    budget_epochs: int | None = None,
    model_config: ModelConfig | None = None,
    features_from: str | None = None,
    seed: int = 0,
    target: float | None = None,
    progress: bool = False,
    command: str | None = None,
    report: Callable[[str], None] | None = None,
    restart: bool = False,
) -> dict:
    """Train every model at every data size on one fixed test set; fit and plot the curves.

    Args:
        data: a matbench task name with local data, a data file, or a table.
        models: names of :func:`~atomsets_tf.evaluation.runners.benchmark_models`;
            the first is the reference of the improvement figures.
        out_dir: where the runs, ``learning_curve.json`` and ``learning_curve.png`` go.
        sizes: data sizes N (training + validation entries); default
            :func:`default_sizes` of the entries outside the test set.
        protocol, fold: which test set (see :func:`nested_splits`).
        training: settings for every size, or a function of N; default
            :func:`~atomsets_tf.evaluation.protocol.default_training` (batch size by N).
        budget_epochs: cap on epochs of every run.
        seed: seed of the subsets and validation parts (the weights' seed is ``training.seed``).
        target: an error to reach (MAE in target units, or 1 - ROC-AUC): the
            summary gives the N each fit needs, with a 1-sigma interval.
        report: called with one line per finished point.
        restart: retrain every run, discarding what ``out_dir`` holds (else a
            finished run is read back, and one with other settings refused).

    Returns:
        The summary written to ``learning_curve.json`` (``out_dir`` is locked while this runs).
    """
    models, tables, splits = _curve_inputs(data, models, sizes, protocol, fold, seed, target)
    first = tables[models[0]]
    _, _, task_type = load_targets(first)
    name = metric_name(task_type)
    out = Path(out_dir)
    start = time.perf_counter()
    with output_lock(out), reporting_bar(len(models) * len(splits), f"learning curve {data_name(first)}", "point",
                                         report) as step:
        results = {}
        for model in models:
            points = [_train_point(tables[model], model, n, split, out, training_for(training, n, budget_epochs),
                                   model_config, features_from, progress, restart, name, step)
                      for n, split in splits.items()]
            results[model] = {"points": points, **_fit_record(points, target)}
        largest = max(splits)
        summary = {**_data_record(first, task_type, protocol, fold, seed, splits), "target": target,
                   "reference_model": models[0], "models": results, "improvement_over_first": _improvements(results, models),
                   "wall_time_s": round(time.perf_counter() - start, 3),
                   **run_record(training_for(training, largest, budget_epochs), budget_epochs, model_config,
                                features_from, command)}
        write_json_atomic(out / LEARNING_CURVE_JSON, summary)
        plot_learning_curve(summary, out / LEARNING_CURVE_PNG)
    return summary


def _data_record(table, task_type: str, protocol: str, fold: int, seed: int, splits: Mapping) -> dict:
    """What ``learning_curve.json`` records of the data, the metric and the nested splits."""
    name, task = metric_name(task_type), data_name(table)
    return {"task": task, "task_type": task_type, "metric": name, "error": "1-roc_auc" if name == "roc_auc" else "mae",
            "unit": None if name == "roc_auc" else TARGET_UNITS.get(task), "protocol": protocol, "fold": fold,
            "seed": seed, "n_entries": len(table), "n_test": len(splits[max(splits)]["test"]), "sizes": list(splits)}


def _curve_inputs(data, models, sizes, protocol: str, fold: int, seed: int, target: float | None):
    """The checked model names, the table each trains on and the nested splits of :func:`learning_curve`."""
    if protocol not in PROTOCOLS:
        raise AtomSetsError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if target is not None and not target > 0:
        raise AtomSetsError(f"the target error must be positive, got {target}")
    models = check_models(models)
    tables = task_tables(data, models)
    return models, tables, nested_splits(tables[models[0]], sizes, protocol, fold, seed)


def _train_point(table, model: str, n: int, split: dict, out: Path, training: TrainingConfig, model_config,
                 features_from, progress: bool, restart: bool, name: str, report) -> dict:
    """Train (or read back) ``model`` at data size ``n`` in ``out/<model>/n_<n>``; its curve point."""
    metrics = train_on_split(table, model, split, out / model / f"n_{n}", training, model_config, features_from,
                             progress, restart)
    if report is not None:
        report(f"{data_name(table)} {model} N={n}: test {name} {metrics[f'test_{name}']:.4g} "
               f"({metrics['epochs_run']} epochs, {metrics.get('wall_time_s') or 0:.0f} s)")
    return _point(n, metrics, name)


def _point(n: int, metrics: Mapping, name: str) -> dict:
    """A learning curve's point: a run's size, scores and error (``1 - ROC-AUC`` for classification)."""
    value = metrics[f"test_{name}"]
    return {"n": n, "n_train": metrics["n_train"], "n_val": metrics["n_val"],
            f"test_{name}": _finite(value), f"val_{name}": _finite(metrics[f"val_{name}"]),
            "error": _finite(1.0 - value if name == "roc_auc" else value),
            "epochs_run": metrics["epochs_run"], "wall_time_s": metrics.get("wall_time_s")}


def _fit_record(points: list[dict], target: float | None) -> dict:
    """A model's ``fit`` (or why there is none) and, with ``target``, the N it needs."""
    usable = [p for p in points if p["error"] is not None and math.isfinite(p["error"]) and p["error"] > 0]
    try:
        fit = fit_power_law([p["n"] for p in usable], [p["error"] for p in usable])
    except AtomSetsError as exc:
        return {"fit": None, "fit_note": str(exc)}
    record: dict = {"fit": fit.to_dict()}
    if target is not None:
        try:
            n, low, high = fit.n_for(target)
            record["n_for_target"] = {"n": _finite(n), "n_low": _finite(low), "n_high": _finite(high)}
        except AtomSetsError as exc:
            record["n_for_target"] = {"n": None, "note": str(exc)}
    return record


def _improvements(results: dict, models: list[str]) -> dict[str, dict[str, float | None]]:
    """Per model after the first: ``{N: 100 * (error_first - error_model) / error_first}`` (%)."""
    reference = {p["n"]: p["error"] for p in results[models[0]]["points"]}
    out = {}
    for model in models[1:]:
        out[model] = {}
        for p in results[model]["points"]:
            e0 = reference.get(p["n"])
            ok = e0 is not None and p["error"] is not None and e0 > 0
            out[model][str(p["n"])] = _finite(100.0 * (e0 - p["error"]) / e0) if ok else None
    return out


def plot_learning_curve(summary: Mapping, path: str | os.PathLike) -> Path | None:
    """Draw a :func:`learning_curve` summary on log-log axes (points and fitted lines, a colour per model).

    A fit is drawn solid over the measured sizes and dashed on to the N that
    reaches the target (at most 100 times the largest size). Returns the PNG's
    path, or None when matplotlib is missing.
    """
    made = new_figure()
    if made is None:
        return None
    fig, (ax,) = made
    for k, (model, record) in enumerate(summary["models"].items()):
        colour = f"C{k % 10}"
        points = [p for p in record["points"] if p["error"] is not None and p["error"] > 0]
        ax.plot([p["n"] for p in points], [p["error"] for p in points], "o", color=colour,
                label=model if record["fit"] is None else f"{model} (slope {record['fit']['slope']:.2f})")
        if record["fit"] is None:
            continue
        fit = PowerLawFit.from_dict(record["fit"])
        lo, hi = min(p["n"] for p in points), max(p["n"] for p in points)
        grid = np.geomspace(lo, hi, 50)
        ax.plot(grid, fit.predict(grid), "-", color=colour)
        n_target = (record.get("n_for_target") or {}).get("n")
        if n_target is not None and n_target > hi:
            grid = np.geomspace(hi, min(n_target, 100 * hi), 50)
            ax.plot(grid, fit.predict(grid), "--", color=colour)
    if summary.get("target") is not None:
        ax.axhline(summary["target"], color="grey", linestyle=":", label=f"target {summary['target']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("data size N (training + validation entries)")
    ax.set_ylabel(error_label(summary["task"], summary["task_type"]))
    task = Path(str(summary["task"])).name.split(".")[0]
    ax.set_title(f"{task}\nlearning curves ({summary['protocol']} split, {summary['n_test']} test entries)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def format_learning_curve(summary: Mapping) -> str:
    """A plain-text table of a :func:`learning_curve` summary: errors per N, improvements, fits, target N."""
    models = list(summary["models"])
    label = "1-AUC" if summary["metric"] == "roc_auc" else "MAE"
    others = list(summary["improvement_over_first"])
    header = ["N", *[f"{label} {m}" for m in models], *[f"% {m} vs {models[0]}" for m in others]]
    rows = []
    for n in summary["sizes"]:
        errors = {m: {p["n"]: p["error"] for p in summary["models"][m]["points"]}.get(n) for m in models}
        gains = [summary["improvement_over_first"][m].get(str(n)) for m in others]
        rows.append([str(n), *[_fmt(errors[m], ".4g") for m in models], *[_fmt(g, "+.1f") for g in gains]])
    lines = text_table(header, rows)
    for model in models:
        record = summary["models"][model]
        fit = record["fit"]
        if fit is None:
            lines.append(f"{model}: no fit ({record.get('fit_note')})")
            continue
        spread = (f"slope ± {fit['slope_std']:.2g}, intercept ± {fit['intercept_std']:.2g}"
                  if fit["slope_std"] is not None else "two points: no uncertainty")
        lines.append(f"{model}: log10({label}) = {fit['intercept']:.3f} {fit['slope']:+.3f} log10(N) ({spread})")
        target = record.get("n_for_target")
        if target is not None:
            reach = target.get("note", "not reached") if target["n"] is None else f"N ≈ {target['n']:.3g}"
            if target.get("n_low") is not None:
                reach += f" (1 sigma: {target['n_low']:.3g} to {target['n_high']:.3g})"
            lines.append(f"  {label} {summary['target']:g}: {reach}")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)
