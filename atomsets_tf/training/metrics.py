"""Evaluation metrics, in NumPy (no scikit-learn needed)."""

from __future__ import annotations

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
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def score(task_type: str, y_true, y_pred) -> dict[str, float]:
    """The metric of a task type: ``{"mae": ...}`` or ``{"roc_auc": ...}``."""
    if task_type == "classification":
        return {"roc_auc": roc_auc(y_true, y_pred)}
    return {"mae": mae(y_true, y_pred)}


def metric_name(task_type: str) -> str:
    return "roc_auc" if task_type == "classification" else "mae"
