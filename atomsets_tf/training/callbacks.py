"""Keras callbacks of the training engine."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator

import keras
import numpy as np

from atomsets_tf.data.matbench_tasks import HIGHER_IS_BETTER
from atomsets_tf.errors import CheckpointError, TrainingInterrupted
from atomsets_tf.training.metrics import metric_name, score
from atomsets_tf.utils.intervals import SaveInterval
from atomsets_tf.utils.io import atomic_path, write_json_atomic


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
        logs = logs if logs is not None else {}
        value = score(self.task_type, self.y_true, self.predict_fn())[metric_name(self.task_type)]
        logs[f"val_{metric_name(self.task_type)}"] = value
        logs["val_score"] = (1.0 - value) if self.task_type == "classification" else value


class BatchCounter(keras.callbacks.Callback):
    """Counts the training batches done, so a dataset can tell where in which epoch an iterator starts.

    ``first_epoch`` and ``first_step`` are where the run started: a resumed run
    may start ``first_step`` batches into epoch ``first_epoch``.
    """

    def __init__(self, steps_per_epoch: int, first_epoch: int = 0, first_step: int = 0):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.first_epoch = int(first_epoch)
        self.first_step = int(first_step)
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def position(self) -> tuple[int, int]:
        """``(epochs completed, batches done in the next epoch)``."""
        epochs, step = divmod(self.first_step + self.batches, self.steps_per_epoch)
        return self.first_epoch + epochs, step

    def epochs_completed(self) -> int:
        return self.position()[0]


#: The validation metrics :class:`ValidationScore` writes, and whether higher is better.
_VALIDATION_METRICS = {f"val_{name}": higher for name, higher in HIGHER_IS_BETTER.items()}


class EpochProgress(keras.callbacks.Callback):
    """Prints one line every ``every`` epochs (and at the first and the last), to stderr.

    Every trainer (``fit``, ``retrain`` in each mode, the multi-worker loop) prints the same line::

        epoch 12/60  loss 0.1234  val_mae 98.76 (best 95.12)  lr 1.00e-03  0.84 s/epoch

    (``val_roc_auc`` for a classifier; ``s/epoch``: the mean over the epochs since the last line).
    :data:`EPOCH_LINE` is its regular expression.
    """

    def __init__(self, epochs: int, every: int | None = None, stream=None, best: float = math.inf):
        super().__init__()
        self.epochs = epochs
        self.every = every or max(1, epochs // 20)
        self.stream = stream or sys.stderr
        self.best = float(best)  # a resumed run's best validation score so far
        self._since = None
        self._epochs_since = 0

    def on_train_begin(self, logs=None):
        self._since, self._epochs_since = time.perf_counter(), 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.best = min(self.best, logs.get("val_score", math.inf))
        self._epochs_since += 1
        if (epoch + 1) % self.every == 0 or epoch == 0 or epoch + 1 == self.epochs:
            now = time.perf_counter()
            seconds = (now - (self._since or now)) / max(self._epochs_since, 1)
            self._since, self._epochs_since = now, 0
            print(self.line(epoch, logs, seconds), file=self.stream, flush=True)

    def line(self, epoch: int, logs: dict, seconds: float) -> str:
        """The progress line of ``epoch`` (0-based) from its ``logs``."""
        parts = [f"epoch {epoch + 1}/{self.epochs}", f"loss {logs.get('loss', float('nan')):.4g}"]
        for key, higher_is_better in _VALIDATION_METRICS.items():
            if key in logs:
                best = (1.0 - self.best) if higher_is_better else self.best
                parts.append(f"{key} {logs[key]:.4g} (best {best:.4g})")
        rate = logs.get("learning_rate", _learning_rate(self.model))
        parts += [f"lr {rate:.2e}" if rate is not None else "lr n/a", f"{seconds:.3g} s/epoch"]
        return "  ".join(parts)


#: The regular expression of an :class:`EpochProgress` line.
EPOCH_LINE = (r"^epoch \d+/\d+  loss \S+  val_(mae|roc_auc) \S+ \(best \S+\)  lr (\S+e[-+]\d+|n/a)  "
              r"\S+ s/epoch$")


def _learning_rate(model) -> float | None:
    """The optimizer's current learning rate (the base rate of a part-rate optimizer), or None."""
    optimizer = getattr(model, "optimizer", None)
    rate = getattr(optimizer, "learning_rate", None)
    if rate is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(rate))
    except (TypeError, ValueError):  # a schedule object Keras does not evaluate here
        return None


class KeepBest(keras.callbacks.Callback):
    """Early stopping on ``val_score`` that keeps the best weights.

    Stops when ``val_score`` has not improved for ``patience`` epochs and, at the
    end of training, puts the best weights back into the model (unless
    ``restore_at_end`` is off: a resumed run finishes an interrupted epoch in a
    ``fit`` of its own, then goes on). ``best_*`` can be given to continue a
    resumed run where it stopped.
    """

    def __init__(self, patience: int, best_score: float = math.inf, best_epoch: int = -1, best_weights=None):
        super().__init__()
        self.patience = int(patience)
        self.best_score = float(best_score)
        self.best_epoch = int(best_epoch)
        self.best_weights = best_weights
        self.stopped_epoch = None
        self.restore_at_end = True

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_score")
        if score is not None and np.isfinite(score) and score < self.best_score:
            self.best_score, self.best_epoch = float(score), int(epoch)
            self.best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_at_end:
            self.restore_best()

    def restore_best(self) -> None:
        """Put the best weights so far (if any) into the model."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochLog(keras.callbacks.Callback):
    """Writes one CSV row per epoch: ``epoch`` and the epoch's logs, in sorted order (as Keras' ``CSVLogger``).

    Each line reaches the file whole: one ``write`` of the complete line on a
    descriptor opened with ``O_APPEND``, then ``fsync``, so a killed run never
    leaves half a row. With ``append`` the rows follow those already there (the
    columns of its header); without, the file starts anew.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        super().__init__()
        self.path = os.fspath(path)
        self.append = bool(append)
        self.keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        self.keys = None
        if self.append and os.path.isfile(self.path):
            with open(self.path) as fh:
                header = fh.readline()
            if header.endswith("\n"):
                self.keys = header.rstrip("\n").split(",")[1:]
        if self.keys is None:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        self.append = True  # a later fit of the same run (after a resumed partial epoch) goes on with the file

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._write_line(["epoch", *self.keys])
        self._write_line([str(epoch), *(_csv_cell(logs.get(key)) for key in self.keys)])

    def _write_line(self, cells: list[str]) -> None:
        data = (",".join(cells) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)


def _csv_cell(value) -> str:
    """A log value as a CSV cell: a float in full precision, ``NA`` when missing."""
    if value is None:
        return "NA"
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return '"' + str(value).replace('"', "'") + '"'


class GracefulStop(keras.callbacks.Callback):
    """On SIGINT or SIGTERM, saves the training state after the current batch and stops (a second signal stops at once).

    Install its handlers around ``fit`` with :meth:`handling_signals`. After the
    batch in which the signal arrives it calls ``save_midway`` (the
    :class:`TrainingCheckpoint`'s :meth:`~TrainingCheckpoint.save_position`,
    when there is one) and raises :class:`~atomsets_tf.errors.TrainingInterrupted`;
    so a run stops within one batch, mid-epoch. After an epoch's last batch
    (``position`` says so: no batches done of the next epoch) it lets the epoch
    end instead: it sets ``model.stop_training`` at the epoch's end, before the
    callbacks after it (put :class:`TrainingCheckpoint` after it: it then saves
    that epoch). ``signum`` is the signal received, if any; ``describe`` gives
    the message of the :class:`~atomsets_tf.errors.TrainingInterrupted`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, describe: Callable[[], str] | None = None, stream=None,
                 position: Callable[[], tuple[int, int]] | None = None,
                 save_midway: Callable[[], None] | None = None):
        super().__init__()
        self.describe = describe or (lambda: "interrupted")
        self.stream = stream or sys.stderr
        self.position = position
        self.save_midway = save_midway
        self.signum: int | None = None
        self.received_at: float | None = None  # time.monotonic() of the signal

    @contextlib.contextmanager
    def handling_signals(self, enabled: bool = True) -> Iterator[None]:
        """Install the handlers for the block (in the main thread only), then restore the previous ones."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s in self.SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise TrainingInterrupted(self.describe(), signum)
        self.signum, self.received_at = signum, time.monotonic()
        print(f"{signal.Signals(signum).name}: stopping after this batch, after saving the training state "
              "(send it again to stop at once)", file=self.stream, flush=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.signum is None or (self.position is not None and self.position()[1] == 0):
            return  # no signal, or the epoch's last batch: the epoch ends (and is saved) first
        if self.save_midway is not None:
            self.save_midway()
        raise TrainingInterrupted(self.describe(), self.signum)

    def on_epoch_end(self, epoch, logs=None):
        if self.signum is not None:
            self.model.stop_training = True


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves everything a killed run needs to resume, in one file written atomically.

    The file (``.npz``) holds the latest weights, the optimizer's state, the
    model's random-seed states, :class:`KeepBest`'s best weights, score and
    epoch, and where the run is: the epochs completed and the batches done in
    the next one (``step``), with the epoch's running loss so far. It is written
    at the end of the first epoch, then when ``interval`` (a
    :class:`~atomsets_tf.utils.intervals.SaveInterval`: seconds or training
    steps) has passed since the last write, mid-epoch too with ``mid_epoch``,
    and when training stops, so a run loses at most that much work.
    ``position`` (:meth:`BatchCounter.position`) says where the run is after a
    batch. :func:`load_training_state` reads the file back. Before its first
    write, the run's ``fingerprint`` (if given) is written to
    ``fingerprint_path``. ``saved_epochs`` / ``saved_step`` are where the last
    write was (None before one); ``saved_at`` its time.monotonic().
    """

    def __init__(self, path: str, keep_best: KeepBest, interval: SaveInterval | float = 30.0,
                 fingerprint: dict | None = None, fingerprint_path: str | None = None,
                 position: Callable[[], tuple[int, int]] | None = None, mid_epoch: bool = False):
        super().__init__()
        self.path = path
        self.keep_best = keep_best
        self.interval = interval if isinstance(interval, SaveInterval) else SaveInterval(seconds=float(interval))
        self.fingerprint = fingerprint
        self.fingerprint_path = fingerprint_path
        self.position = position
        self.mid_epoch = bool(mid_epoch and position is not None)
        self.saved_epochs: int | None = None
        self.saved_step: int | None = None
        self.saved_at: float | None = None
        self.pending_metrics: dict | None = None  # a resumed epoch's running metrics, restored as it begins
        self._last = time.monotonic()
        self._steps_since = 0
        self._saved_in_fit = False

    def on_train_begin(self, logs=None):
        self._last, self._steps_since, self._saved_in_fit = time.monotonic(), 0, False

    def on_epoch_begin(self, epoch, logs=None):
        if self.pending_metrics:  # after fit's reset_metrics
            for var in _metric_variables(self.model):
                if var.path in self.pending_metrics:
                    var.assign(self.pending_metrics[var.path])
        self.pending_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        self._steps_since += 1
        if self.mid_epoch and self._due() and self.position()[1] != 0:
            self.save_position()

    def on_epoch_end(self, epoch, logs=None):
        if not self._saved_in_fit or self._due() or self.model.stop_training:
            self.save(epoch + 1)

    def _due(self) -> bool:
        return self.interval.is_due(time.monotonic() - self._last, self._steps_since)

    def save_position(self) -> None:
        """Save the state where the run is now (mid-epoch: after the batch just done)."""
        self.save(*self.position())

    def save(self, epochs_completed: int, step: int = 0) -> None:
        """Write the state after ``epochs_completed`` epochs and ``step`` batches of the next one."""
        if self.fingerprint is not None and self.fingerprint_path and self.saved_epochs is None:
            write_json_atomic(self.fingerprint_path, self.fingerprint)
        arrays = {"epochs_completed": np.array(epochs_completed), "step": np.array(step),
                  "best_score": np.array(self.keep_best.best_score), "best_epoch": np.array(self.keep_best.best_epoch)}
        metrics = _metric_variables(self.model) if step else []
        arrays["metric_paths"] = np.array([v.path for v in metrics], dtype=str)
        for prefix, values in (("weights", self.model.get_weights()),
                               ("optimizer", [np.asarray(v) for v in self.model.optimizer.variables]),
                               ("best", self.keep_best.best_weights or []),
                               ("seeds", [np.asarray(v) for v in _seed_variables(self.model)]),
                               ("metric", [np.asarray(v) for v in metrics])):
            arrays[f"n_{prefix}"] = np.array(len(values))
            arrays.update({f"{prefix}_{k}": v for k, v in enumerate(values)})
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        self.saved_epochs, self.saved_step = int(epochs_completed), int(step)
        self._last = self.saved_at = time.monotonic()
        self._steps_since, self._saved_in_fit = 0, True


def _seed_variables(model) -> list:
    """The model's random-seed states (dropout's): variables that are not weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _metric_variables(model) -> list:
    """The variables of the model's metrics (the running loss of an epoch)."""
    return [v for metric in model.metrics for v in metric.variables]


def _read_state(path: str) -> dict:
    """The arrays of a :class:`TrainingCheckpoint` file; a damaged one is a :class:`CheckpointError`."""
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(_damaged(path, f"is truncated or corrupt ({type(exc).__name__}: {exc})")) from None
    missing = [k for k in ("epochs_completed", "best_score", "best_epoch", "n_weights", "n_optimizer", "n_best")
               if k not in data]
    if missing:
        raise CheckpointError(_damaged(path, f"is not a training state (it has no {missing[0]!r})"))
    return data


def _damaged(path: str, what: str) -> str:
    folder = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return (f"the training state {path} {what}; rerun with --restart (restart=True) to discard it and start "
            f"{folder} afresh")


def load_training_state(path: str, model) -> dict | None:
    """Restore a :class:`TrainingCheckpoint` file into a compiled ``model``.

    Sets the model's weights, its optimizer's state and its random-seed states,
    and returns ``{"epochs_completed", "step", "best_score", "best_epoch",
    "best_weights", "metrics"}`` (``step``: batches done of the next epoch;
    ``metrics``: that epoch's running metric variables by path, for
    :attr:`TrainingCheckpoint.pending_metrics`), or ``None`` when there is no file.

    Raises:
        CheckpointError: the file is truncated or corrupt, or does not fit ``model``.
    """
    if not os.path.exists(path):
        return None
    data = _read_state(path)

    def listed(prefix):
        return [data[f"{prefix}_{k}"] for k in range(int(data.get(f"n_{prefix}", 0)))]

    try:
        model.set_weights(listed("weights"))
        model.optimizer.build(model.trainable_variables)
        seeds = listed("seeds")
        for var, value in zip(model.optimizer.variables, listed("optimizer"), strict=True):
            var.assign(value)
        for var, value in zip(_seed_variables(model) if seeds else [], seeds, strict=True):
            var.assign(value)
        best = listed("best") or None
    except (ValueError, KeyError) as exc:
        raise CheckpointError(_damaged(path, f"does not fit this model ({exc})")) from None
    paths = [str(p) for p in data.get("metric_paths", [])]
    return {
        "epochs_completed": int(data["epochs_completed"]),
        "step": int(data.get("step", 0)),
        "best_score": float(data["best_score"]),
        "best_epoch": int(data["best_epoch"]),
        "best_weights": best,
        "metrics": dict(zip(paths, listed("metric"), strict=True)),
    }
