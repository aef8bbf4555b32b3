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
    """Early stopping on ``val_score`` that keeps the best weights, on disk too.

    Stops when ``val_score`` has not improved for ``patience`` epochs and, at the
    end of training, puts the best weights back into the model. With a
    ``directory``, the best weights and their epoch are written there
    atomically each time they improve, and read back when training is
    restarted (after an interruption), so a resumed run keeps its best model
    and its patience count.
    """

    def __init__(self, patience: int, directory: str | None = None, min_delta: float = 0.0):
        super().__init__()
        self.patience = int(patience)
        self.directory = directory
        self.min_delta = float(min_delta)
        self.best_score = math.inf
        self.best_epoch = -1
        self.best_weights = None
        self.stopped_epoch = None

    def _paths(self):
        import os

        return os.path.join(self.directory, "best.weights.h5"), os.path.join(self.directory, "best.json")

    def on_train_begin(self, logs=None):
        import json
        import os

        if self.directory and os.path.exists(self._paths()[1]):
            with open(self._paths()[1]) as fh:
                state = json.load(fh)
            self.best_score, self.best_epoch = float(state["score"]), int(state["epoch"])
            self.model.load_weights(self._paths()[0])
            self.best_weights = self.model.get_weights()
            # BackupAndRestore loads the latest weights after us only if it comes later in the list.

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_score")
        if score is None or not np.isfinite(score):
            return
        if score < self.best_score - self.min_delta:
            self.best_score, self.best_epoch = float(score), int(epoch)
            self.best_weights = self.model.get_weights()
            if self.directory:
                from atomsets_tf.utils.io import atomic_path, write_json_atomic

                weights_path, state_path = self._paths()
                with atomic_path(weights_path) as tmp:
                    self.model.save_weights(str(tmp))
                write_json_atomic(state_path, {"epoch": self.best_epoch, "score": self.best_score})
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

