"""Evaluation metrics, in NumPy and SciPy (no scikit-learn needed)."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from scipy.stats import rankdata

from atomsets_tf.data.matbench_tasks import METRICS


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
    """The 1-based ranks of ``values``, ties given their average rank (``scipy.stats.rankdata``)."""
    return rankdata(np.asarray(values, dtype=np.float64).ravel(), method="average")


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties ranked by their average); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


#: The central intervals' probabilities of the calibration curve, and each one's half-width in standard deviations.
CALIBRATION_LEVELS = np.linspace(0.01, 0.99, 99)
_HALF_WIDTHS = np.array([NormalDist().inv_cdf(0.5 + p / 2.0) for p in CALIBRATION_LEVELS])


def uncertainty_scores(y_true, mean, std) -> dict[str, float]:
    r"""How well a predicted standard deviation ``std`` describes the errors of ``mean``, read as a Gaussian.

    Returns:
        ``spearman_abs_error_std``: Spearman's correlation of :math:`|y - \mu|` with :math:`\sigma`;
        ``coverage_1sigma`` / ``coverage_2sigma``: the fraction of targets within :math:`\mu \pm \sigma` /
        :math:`\pm 2\sigma` (a Gaussian has 0.683 / 0.954); ``miscalibration_area``: the mean, over the 99
        central intervals of probability 0.01..0.99, of the gap between the observed and the expected fraction
        inside (0 = calibrated). This is what uncertainty-toolbox calls the mean absolute calibration error;
        its ``miscalibration_area`` is the trapezoid area between the same curves on a 100-point grid, a
        slightly different number. ``mean_std``: the average :math:`\sigma`.
    """
    y, mu, sigma = (np.asarray(a, dtype=np.float64).ravel() for a in (y_true, mean, std))
    err = np.abs(y - mu)
    z = np.where(sigma > 0, err / np.where(sigma > 0, sigma, 1.0), np.where(err > 0, np.inf, 0.0))
    expected = CALIBRATION_LEVELS
    observed = np.mean(z[:, None] <= _HALF_WIDTHS[None, :], axis=0)
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
    """``"roc_auc"`` for classification, ``"mae"`` for regression (:data:`~atomsets_tf.data.matbench_tasks.METRICS`)."""
    return METRICS["classification" if task_type == "classification" else "regression"]


def task_type_of(metric: str) -> str:
    """The task type a metric scores (the inverse of :func:`metric_name`)."""
    return next(task_type for task_type, name in METRICS.items() if name == metric)


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
