"""Keras callbacks of the training engine."""

from __future__ import annotations

import math
import sys

import keras
import numpy as np


class ValidationScore(keras.callbacks.Callback):
    """Computes the task's validation metric (MAE or ROC-AUC) at the end of each epoch.

    Writes it into the epoch's logs as ``val_score`` (lower is better: MAE, or
    ``1 - ROC-AUC``) and ``val_mae`` / ``val_roc_auc``, so EarlyStopping,
    checkpointing and the CSV log all see one number.
    """

    def __init__(self, predict_fn, y_true: np.ndarray, task_type: str):
        super().__init__()
        self.predict_fn = predict_fn
        self.y_true = np.asarray(y_true).ravel()
        self.task_type = task_type

    def on_epoch_end(self, epoch, logs=None):
        from atomsets_tf.training.metrics import metric_name, score

        logs = logs if logs is not None else {}
        value = score(self.task_type, self.y_true, self.predict_fn())[metric_name(self.task_type)]
        logs[f"val_{metric_name(self.task_type)}"] = value
        logs["val_score"] = (1.0 - value) if self.task_type == "classification" else value


class BatchCounter(keras.callbacks.Callback):
    """Counts the training batches done, so a dataset can tell which epoch an iterator starts in."""

    def __init__(self, steps_per_epoch: int, first_epoch: int = 0):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.first_epoch = int(first_epoch)
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def epochs_completed(self) -> int:
        return self.first_epoch + self.batches // self.steps_per_epoch


class EpochProgress(keras.callbacks.Callback):
    """Prints one line every ``every`` epochs (and at the last), to stderr."""

    def __init__(self, epochs: int, every: int | None = None, stream=None):
        super().__init__()
        self.epochs = epochs
        self.every = every or max(1, epochs // 20)
        self.stream = stream or sys.stderr
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        score = logs.get("val_score", math.inf)
        self.best = min(self.best, score)
        if (epoch + 1) % self.every == 0 or epoch == 0 or epoch + 1 == self.epochs:
            parts = [f"epoch {epoch + 1}/{self.epochs}", f"loss {logs.get('loss', float('nan')):.4g}"]
            for key in ("val_mae", "val_roc_auc"):
                if key in logs:
                    parts.append(f"{key} {logs[key]:.4g}")
            parts.append(f"best val_score {self.best:.4g}")
            print("  ".join(parts), file=self.stream, flush=True)


class KeepBest(keras.callbacks.Callback):
    """Early stopping on ``val_score`` that keeps the best weights.

    Stops when ``val_score`` has not improved for ``patience`` epochs and, at the
    end of training, puts the best weights back into the model. ``best_*`` can
    be given to continue a resumed run where it stopped.
    """

    def __init__(self, patience: int, best_score: float = math.inf, best_epoch: int = -1, best_weights=None):
        super().__init__()
        self.patience = int(patience)
        self.best_score = float(best_score)
        self.best_epoch = int(best_epoch)
        self.best_weights = best_weights
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_score")
        if score is not None and np.isfinite(score) and score < self.best_score:
            self.best_score, self.best_epoch = float(score), int(epoch)
            self.best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves everything a killed run needs to resume, in one file written atomically.

    The file (``.npz``) holds the latest weights, the optimizer's state, the
    number of completed epochs and :class:`KeepBest`'s best weights, score and
    epoch. It is written at the end of an epoch when ``min_interval_s`` seconds
    have passed since the last write, and at the end of training, so a run
    loses at most that much work. :func:`load_training_state` reads it back.
    """

    def __init__(self, path: str, keep_best: KeepBest, min_interval_s: float = 30.0):
        super().__init__()
        self.path = path
        self.keep_best = keep_best
        self.min_interval_s = float(min_interval_s)
        self._last = None

    def on_train_begin(self, logs=None):
        import time

        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        import time

        now = time.monotonic()
        if now - self._last >= self.min_interval_s or self.model.stop_training:
            self.save(epoch + 1)
            self._last = now

    def save(self, epochs_completed: int) -> None:
        from atomsets_tf.utils.io import atomic_path

        arrays = {"epochs_completed": np.array(epochs_completed), "best_score": np.array(self.keep_best.best_score),
                  "best_epoch": np.array(self.keep_best.best_epoch)}
        for prefix, values in (("weights", self.model.get_weights()),
                               ("optimizer", [np.asarray(v) for v in self.model.optimizer.variables]),
                               ("best", self.keep_best.best_weights or [])):
            arrays[f"n_{prefix}"] = np.array(len(values))
            arrays.update({f"{prefix}_{k}": v for k, v in enumerate(values)})
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_training_state(path: str, model) -> dict | None:
    """Restore a :class:`TrainingCheckpoint` file into a compiled ``model``.

    Sets the model's weights and its optimizer's state, and returns
    ``{"epochs_completed", "best_score", "best_epoch", "best_weights"}``, or
    ``None`` when there is no file.
    """
    import os

    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}

    def listed(prefix):
        return [data[f"{prefix}_{k}"] for k in range(int(data[f"n_{prefix}"]))]

    model.set_weights(listed("weights"))
    model.optimizer.build(model.trainable_variables)
    for var, value in zip(model.optimizer.variables, listed("optimizer"), strict=True):
        var.assign(value)
    return {
        "epochs_completed": int(data["epochs_completed"]),
        "best_score": float(data["best_score"]),
        "best_epoch": int(data["best_epoch"]),
        "best_weights": listed("best") or None,
    }
