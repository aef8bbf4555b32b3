"""Evaluation metrics, in NumPy (no scikit-learn needed)."""

from __future__ import annotations

import math

import numpy as np


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    return float(np.mean(np.abs(y_true - y_pred)))


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U statistic, ties counted half).

    Returns NaN when ``y_true`` holds a single class.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_ranks(values) -> np.ndarray:
    """The 1-based ranks of ``values``, ties given their average rank."""
    s = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties ranked by their average); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on ``erf`` (exact to 1e-12; no SciPy needed)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p else (lo, mid)
    return 0.5 * (lo + hi)


def uncertainty_scores(y_true, mean, std) -> dict[str, float]:
    r"""How well a predicted standard deviation ``std`` describes the errors of ``mean``, read as a Gaussian.

    Returns:
        ``spearman_abs_error_std``: Spearman's correlation of :math:`|y - \mu|` with :math:`\sigma`;
        ``coverage_1sigma`` / ``coverage_2sigma``: the fraction of targets within :math:`\mu \pm \sigma` /
        :math:`\pm 2\sigma` (a Gaussian has 0.683 / 0.954); ``miscalibration_area``: the mean, over central
        intervals of probability 0.01..0.99, of the gap between the observed and the expected fraction inside
        (0 = calibrated; uncertainty-toolbox's definition); ``mean_std``: the average :math:`\sigma`.
    """
    y, mu, sigma = (np.asarray(a, dtype=np.float64).ravel() for a in (y_true, mean, std))
    err = np.abs(y - mu)
    z = np.where(sigma > 0, err / np.where(sigma > 0, sigma, 1.0), np.where(err > 0, np.inf, 0.0))
    expected = np.linspace(0.01, 0.99, 99)
    observed = np.array([np.mean(z <= _normal_quantile(0.5 + p / 2.0)) for p in expected])
    return {
        "spearman_abs_error_std": spearman(err, sigma),
        "coverage_1sigma": float(np.mean(z <= 1.0)),
        "coverage_2sigma": float(np.mean(z <= 2.0)),
        "miscalibration_area": float(np.mean(np.abs(observed - expected))),
        "mean_std": float(np.mean(sigma)),
    }


def score(task_type: str, y_true, y_pred) -> dict[str, float]:
    """The metric of a task type: ``{"mae": ...}`` or ``{"roc_auc": ...}``."""
    if task_type == "classification":
        return {"roc_auc": roc_auc(y_true, y_pred)}
    return {"mae": mae(y_true, y_pred)}


def metric_name(task_type: str) -> str:
    return "roc_auc" if task_type == "classification" else "mae"


def fit_std_scale(y_true, mean, std, objective: str = "miscalibration") -> float:
    r"""The factor that rescales a predicted spread ``std`` into a calibrated standard deviation on this data.

    Fit it on validation data only.

    Args:
        objective: ``"miscalibration"``: the factor, on a log grid from 0.02 to 50, with the smallest
            miscalibration area (:func:`uncertainty_scores`): errors far from Gaussian (many exact zeros, heavy
            tails) are better served by it; ``"likelihood"``: the Gaussian maximum-likelihood factor
            :math:`\sqrt{\mathrm{mean}((y - \mu)^2 / \sigma^2)}`. Entries with zero spread are left out of
            the likelihood.
    """
    y_true, mean, std = (np.asarray(a, dtype=np.float64).ravel() for a in (y_true, mean, std))
    ok = std > 0
    if not ok.any():
        return 1.0
    if objective == "likelihood":
        return float(np.sqrt(np.mean(((y_true[ok] - mean[ok]) / std[ok]) ** 2))) or 1.0
    if objective != "miscalibration":
        raise ValueError(f"objective must be miscalibration or likelihood, got {objective!r}")
    grid = np.geomspace(0.02, 50.0, 161)
    areas = [uncertainty_scores(y_true, mean, std * s)["miscalibration_area"] for s in grid]
    return float(grid[int(np.argmin(areas))])
