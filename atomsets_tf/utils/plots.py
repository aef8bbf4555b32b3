"""Figures of a run: parity (predicted against true), ROC, training curve. numpy + matplotlib only.

matplotlib is the optional ``plot`` extra: every function raises :class:`~atomsets_tf.errors.PlotsUnavailableError`
(``pip install "atomsets-tf[plot]"``) without it, so that a caller can skip its plots and go on. Figures are
drawn on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global state) and written as PNG
atomically.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from atomsets_tf.errors import PlotsUnavailableError
from atomsets_tf.utils.io import atomic_path

#: What to install for the plots.
PLOT_EXTRA_HINT = 'pip install "atomsets-tf[plot]"'
#: The size (inches) and resolution of a one-panel figure.
FIGURE_SIZE = (5.0, 4.5)
DPI = 150
#: How a metric is written on an axis.
_METRIC_LABELS = {"mae": "MAE", "roc_auc": "ROC-AUC"}


def new_figure(n_panels: int = 1, width: float = FIGURE_SIZE[0], height: float = FIGURE_SIZE[1]):
    """A matplotlib ``(Figure, axes)`` on the Agg canvas (no global pyplot state).

    Raises:
        PlotsUnavailableError: matplotlib is not installed.
    """
    try:  # matplotlib is optional (the plot extra)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailableError(f"matplotlib is not installed ({PLOT_EXTRA_HINT})") from None
    fig = Figure(figsize=(width * n_panels, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically; returns the path."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def axis_label(quantity: str, unit: str | None) -> str:
    """``"yield strength (MPa)"``, or the quantity alone without a unit."""
    return f"{quantity} ({unit})" if unit else quantity


def parity_plot(y_true, y_pred, path: str | os.PathLike, *, quantity: str = "target", unit: str | None = None,
                title: str | None = None) -> Path:
    """Predicted against true values with the y = x line, on equal axes; the MAE in the legend.

    Args:
        y_true: the true values.
        y_pred: the predictions, in the same units.
        path: the PNG to write.
        quantity: what the values are (the axis labels), e.g. ``"yield strength"``.
        unit: their unit, e.g. ``"MPa"`` (``None``: none shown).
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        PlotsUnavailableError: matplotlib is not installed.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    fig, (ax,) = new_figure()
    finite = np.isfinite(y_true) & np.isfinite(y_pred)
    both = np.concatenate([y_true[finite], y_pred[finite]]) if finite.any() else np.zeros(1)
    low, high = float(both.min()), float(both.max())
    pad = 0.05 * (high - low or 1.0)
    limits = (low - pad, high + pad)
    ax.plot(limits, limits, color="0.4", linestyle="--", linewidth=1, label="y = x", zorder=1)
    mae = float(np.mean(np.abs(y_true[finite] - y_pred[finite]))) if finite.any() else math.nan
    ax.scatter(y_true, y_pred, s=14, alpha=0.6, edgecolors="none", zorder=2,
               label=f"{len(y_true)} entries, MAE {mae:.3g}" + (f" {unit}" if unit else ""))
    _finish_square(ax, limits, f"true {axis_label(quantity, unit)}", f"predicted {axis_label(quantity, unit)}",
                   "upper left", title)
    return save_figure(fig, path)


def _finish_square(ax, limits: tuple[float, float], xlabel: str, ylabel: str, legend_at: str,
                   title: str | None) -> None:
    """The square axes of a parity plot or a ROC: equal limits on both axes, labels, legend, grid, title."""
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc=legend_at, fontsize="small", framealpha=0.9)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize="medium")


def roc_curve(y_true, probability) -> tuple[np.ndarray, np.ndarray, float]:
    """The ROC curve ``(false positive rate, true positive rate, AUC)`` of scores against binary labels.

    One point per distinct score (ties move both rates at once), from (0, 0) to (1, 1); the AUC is the
    trapezoidal area, which counts tied pairs half (the Mann-Whitney statistic). NaN AUC and an empty curve
    when ``y_true`` holds one class.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    scores = np.asarray(probability, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0), math.nan
    order = np.argsort(-scores, kind="stable")
    scores, y = scores[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def roc_plot(y_true, probability, path: str | os.PathLike, *, title: str | None = None,
             positive: str = "positive class") -> Path:
    """The ROC curve of a classifier's probabilities, with the AUC in the legend and the chance line.

    Args:
        y_true: the labels (0/1).
        probability: the predicted probabilities of class 1.
        path: the PNG to write.
        title: the figure's title.
        positive: what class 1 is (the y axis says ``true positive rate (positive = 1)``).

    Returns:
        ``path``.

    Raises:
        PlotsUnavailableError: matplotlib is not installed.
    """
    fpr, tpr, auc = roc_curve(y_true, probability)
    fig, (ax,) = new_figure()
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    ax.plot(fpr, tpr, linewidth=2, label=f"{len(np.ravel(y_true))} entries, ROC-AUC {auc:.3f}")
    _finish_square(ax, (-0.01, 1.01), "false positive rate", f"true positive rate ({positive} = 1)", "lower right",
                   title)
    return save_figure(fig, path)


def read_training_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a ``training_log.csv`` (``epoch`` and the logs) as float arrays (``NA`` as NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return {}
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]

    def number(cell: str) -> float:
        try:
            return float(cell)
        except ValueError:
            return math.nan

    return {name: np.array([number(r[k]) for r in body]) for k, name in enumerate(header)}


def training_curve_plot(log: str | os.PathLike | Mapping[str, Sequence[float]], path: str | os.PathLike, *,
                        metric: str = "val_mae", unit: str | None = None, title: str | None = None,
                        higher_is_better: bool | None = None) -> Path:
    """Training loss and the validation metric against epoch, in two panels; the best epoch marked.

    Args:
        log: a ``training_log.csv`` path, or its columns (``epoch``, ``loss``, ``metric``).
        path: the PNG to write.
        metric: the validation column, e.g. ``"val_mae"`` or ``"val_roc_auc"``.
        unit: the metric's unit (``None``: none shown).
        title: the figure's title.
        higher_is_better: whether the best epoch is the metric's maximum (default: for ``roc_auc`` only).

    Returns:
        ``path``.

    Raises:
        PlotsUnavailableError: matplotlib is not installed.
        KeyError: the log has no ``epoch``, ``loss`` or ``metric`` column.
    """
    columns = read_training_log(log) if isinstance(log, str | os.PathLike) else log
    epochs = np.asarray(columns["epoch"], dtype=np.float64) + 1  # the log counts from 0, the lines from 1
    loss = np.asarray(columns["loss"], dtype=np.float64)
    values = np.asarray(columns[metric], dtype=np.float64)
    higher = metric.endswith("roc_auc") if higher_is_better is None else higher_is_better
    fig, (left, right) = new_figure(2, width=4.5, height=3.8)
    left.plot(epochs, loss, linewidth=1.5, color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.set_title("training loss", fontsize="medium")
    right.plot(epochs, values, linewidth=1.5, color="tab:orange")
    right.set_xlabel("epoch")
    name = _METRIC_LABELS.get(metric.removeprefix("val_"), metric.removeprefix("val_"))
    right.set_ylabel(axis_label(f"validation {name}", unit))
    right.set_title(f"validation {name}", fontsize="medium")
    if np.isfinite(values).any():
        best = int(np.nanargmax(values) if higher else np.nanargmin(values))
        for ax in (left, right):
            ax.axvline(epochs[best], color="tab:green", linestyle=":", linewidth=1.2,
                       label=f"best epoch {int(epochs[best])}")
        right.scatter([epochs[best]], [values[best]], color="tab:green", zorder=3,
                      label=f"best {values[best]:.4g}" + (f" {unit}" if unit else ""))
        right.legend(loc="best", fontsize="small", framealpha=0.9)
        left.legend(loc="best", fontsize="small", framealpha=0.9)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    return save_figure(fig, path)
