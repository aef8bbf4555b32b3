"""The training engine: fit a Keras model on padded sets with early stopping, resumably, under any strategy.

:func:`train` compiles the model, restores an interrupted run's state, and runs
Keras' ``fit`` (or the multi-worker loop) with the engine's callbacks: the
validation score, early stopping that keeps the best weights, the per-epoch log,
the resumable state (saved after the first epoch, then every
``checkpoint_interval_s``, and on SIGINT/SIGTERM at the end of the epoch).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import tensorflow as tf

from atomsets_tf.data.pipeline import make_dataset, n_batches
from atomsets_tf.errors import AtomSetsError, TrainingInterrupted
from atomsets_tf.models.base import predict_sets
from atomsets_tf.models.ensemble import Ensemble
from atomsets_tf.training.callbacks import (
    BatchCounter,
    EpochLog,
    EpochProgress,
    GracefulStop,
    KeepBest,
    TrainingCheckpoint,
    ValidationScore,
    load_training_state,
)
from atomsets_tf.training.losses import REGRESSION_LOSSES, EnsembleLoss, ZeroInflatedLoss, robust_l1
from atomsets_tf.training.multi_worker import fit_multi_worker, is_multi_worker, num_workers
from atomsets_tf.training.runs import RUN_FILE, STATE_DIR, STATE_FILE
from atomsets_tf.training.schedules import scheduler_callback
from atomsets_tf.training.transfer import make_optimizer
from atomsets_tf.utils.io import atomic_path

#: The per-epoch CSV log of a run's output folder.
TRAINING_LOG = "training_log.csv"


@dataclass
class TrainingConfig:
    """Optimisation settings.

    Attributes:
        epochs: maximum number of epochs.
        patience: epochs without a better validation metric before stopping
            (the paper uses 200).
        batch_size: global batch size.
        learning_rate: Adam's learning rate.
        seed: seed of the weights' initialisation and of the batch shuffling.
        checkpoint_interval_s: least time between two saves of the resumable
            training state after the first epoch's (a killed run loses at most
            this much work; SIGINT and SIGTERM save it at the end of the epoch).
        loss: regression loss, ``"mae"`` (L1), ``"mse"`` or ``"robust_l1"``
            (CGAT's, with the model's log-std; CGAT only); classification always
            uses binary cross-entropy.
        schedule: learning-rate schedule (see :mod:`~atomsets_tf.training.schedules`):
            ``"constant"``, ``"cyclical"`` (triangular, 0.1-1, the CGAT paper's) or ``"cosine"``.
        schedule_period: period in epochs of the cyclical schedule.
        optimizer: ``"adam"`` or ``"adamw"`` (the CGAT paper's, with ``weight_decay``).
        weight_decay: AdamW's decoupled weight decay.
        steps_per_epoch: batches in an epoch; ``None`` = one pass over the training set.
        mixed_precision: ``None``, ``"mixed_float16"`` or ``"mixed_bfloat16"``:
            the Keras dtype policy the model is built with (the policy in force
            before is restored afterwards).
    """

    epochs: int = 1000
    patience: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_interval_s: float = 30.0
    loss: str = "mae"
    schedule: str = "constant"
    schedule_period: int = 130
    optimizer: str = "adam"
    weight_decay: float = 1e-6
    mixed_precision: str | None = None
    steps_per_epoch: int | None = None


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the header and the first ``epochs`` complete rows of a CSV log (rows past a resume point are redone)."""
    if path.is_file():

        lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines[: epochs + 1]))


def _resume(model, keep, out_dir, config: TrainingConfig, fingerprint: Mapping | None):
    """Restore ``out_dir``'s training state, if any, into ``model`` and ``keep``; the callbacks that save it.

    Returns ``(epochs already done, [CSV log, checkpoint])``.
    """

    state_path = Path(out_dir) / STATE_DIR / STATE_FILE
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = load_training_state(str(state_path), model)
    resumed = 0
    if state is not None:
        resumed = state["epochs_completed"]
        keep.best_score, keep.best_epoch, keep.best_weights = (
            state["best_score"], state["best_epoch"], state["best_weights"])
        _truncate_log(Path(out_dir) / TRAINING_LOG, resumed)
    # The log row is written before the state that counts its epoch, so a resume never loses a row.
    checkpoint = TrainingCheckpoint(str(state_path), keep, config.checkpoint_interval_s,
                                    None if fingerprint is None else dict(fingerprint),
                                    str(state_path.with_name(RUN_FILE)))
    return resumed, [EpochLog(Path(out_dir) / TRAINING_LOG, append=resumed > 0), checkpoint]


def _interruption(checkpoint, out_dir) -> str:
    """What an interrupted run kept, for :class:`~atomsets_tf.errors.TrainingInterrupted`'s message."""
    if checkpoint is None:
        return "interrupted; nothing was saved (no output folder)"
    if checkpoint.saved_epochs is None:
        return f"interrupted before the first epoch ended; nothing was saved in {out_dir}"
    return (f"interrupted; the training state was saved in {Path(checkpoint.path).parent} (after epoch "
            f"{checkpoint.saved_epochs}), run the same command to resume")


def _compiled(model, config: TrainingConfig, task_type: str, optimizer=None):
    """``model`` compiled with the task's loss and ``optimizer`` (default: ``config``'s at its learning rate)."""

    if config.loss not in REGRESSION_LOSSES:
        raise AtomSetsError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}, got {config.loss!r}")
    if optimizer is None:
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    model.compile(optimizer=optimizer, loss=training_loss(model, config, task_type))
    return model


def training_loss(model, config: TrainingConfig, task_type: str):
    """The loss ``model`` trains with: binary cross-entropy for a classifier, ``config.loss`` for a regressor,
    the two-part loss of a zero-inflated output (the model's ``loss_kind``), and for an
    :class:`~atomsets_tf.models.ensemble.Ensemble` the sum of its members' own losses."""
    if isinstance(model, Ensemble):
        if config.loss == "robust_l1":
            raise AtomSetsError("an ensemble's members train with mae or mse, not robust_l1")
        first = model.members[0]
        kind = "binary_crossentropy" if task_type == "classification" else (
            getattr(first, "loss_kind", None) or config.loss)
        return EnsembleLoss(kind, model.member_widths, getattr(first, "loss_scale", 1.0))
    if task_type == "classification":
        return "binary_crossentropy"
    if getattr(model, "loss_kind", None) == "zero_inflated":
        return ZeroInflatedLoss(model.loss_scale)
    return robust_l1 if config.loss == "robust_l1" else config.loss


def train(
    model,
    sets,
    targets: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    task_type: str,
    config: TrainingConfig,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    optimizer=None,
    fingerprint: Mapping | None = None,
    train_weights: np.ndarray | None = None,
) -> dict:
    """Fit ``model`` on ``train_idx`` with early stopping on ``val_idx``; the model ends on its best weights.

    ``sets`` is any padded-examples collection (see
    :func:`~atomsets_tf.data.pipeline.make_dataset`). ``optimizer`` defaults to
    Adam at ``config.learning_rate``.

    With ``out_dir``, the training state is saved in ``out_dir/.training_state``
    (see :class:`~atomsets_tf.training.callbacks.TrainingCheckpoint`), with the
    run's ``fingerprint`` beside it, and a run that finds one there resumes
    from it. SIGINT or SIGTERM (outside multi-worker training) stops at the end
    of the epoch, saves the state and raises
    :class:`~atomsets_tf.errors.TrainingInterrupted`.

    ``train_weights`` (``(len(train_idx), K)``) weighs each training entry in each of an ensemble's K
    members' losses (bootstrap multiplicities); in-memory sets only.

    Returns a dict with ``epochs_run``, ``best_epoch`` and ``resumed_from_epoch``.
    """

    train_sets, val_sets = sets.subset(train_idx), sets.subset(val_idx)
    _compiled(model, config, task_type, optimizer)
    keep = KeepBest(config.patience)
    stop = GracefulStop()
    callbacks: list = [ValidationScore(lambda: predict_sets(model, val_sets), targets[val_idx], task_type), keep,
                       stop]
    resumed, checkpoint = 0, None
    if out_dir is not None:
        resumed, savers = _resume(model, keep, out_dir, config, fingerprint)
        callbacks += savers
        checkpoint = savers[-1]
    stop.describe = partial(_interruption, checkpoint, out_dir)
    if config.schedule != "constant":

        callbacks.insert(0, scheduler_callback(config.schedule, config.learning_rate, config.epochs,
                                               config.schedule_period))
    if progress:
        callbacks.append(EpochProgress(config.epochs, best=keep.best_score))
    steps = _steps_per_epoch(train_sets, config)
    counter = BatchCounter(steps, resumed)
    multi_worker = is_multi_worker()
    train_targets = targets[train_idx]
    if train_weights is not None:
        if getattr(train_sets, "streams", False):
            raise AtomSetsError("bootstrap weights need a training set in memory, not a streamed prepared dataset")
        train_targets = np.column_stack([train_targets, train_weights])
    if multi_worker and getattr(train_sets, "streams", False):  # each worker reads its own shards
        train_ds = train_sets.dataset_fn(targets[train_idx], config.batch_size, shuffle=True, seed=config.seed,
                                         first_epoch=resumed)
    else:
        train_ds = make_dataset(train_sets, train_targets, config.batch_size, shuffle=True, seed=config.seed,
                                epochs=config.epochs, first_epoch=resumed, epoch_source=counter.epochs_completed)
    fit_fn = partial(fit_multi_worker, model) if multi_worker else model.fit  # Keras' fit fails there
    reading = getattr(train_sets, "reading", nullcontext)  # a streamed set names a corrupt shard
    with stop.handling_signals(enabled=not multi_worker), reading():  # (signals: one worker would desynchronise)
        history = fit_fn(train_ds, epochs=config.epochs, initial_epoch=resumed, callbacks=[counter, *callbacks],
                         verbose=0, steps_per_epoch=steps, shuffle=False)
    epochs_run = resumed + len(history.epoch)
    if stop.signum is not None and keep.stopped_epoch is None and epochs_run < config.epochs:
        raise TrainingInterrupted(stop.describe(), stop.signum)
    return {"epochs_run": epochs_run, "best_epoch": keep.best_epoch + 1, "resumed_from_epoch": resumed}


def _steps_per_epoch(train_sets, config: TrainingConfig) -> int:
    """Steps of one epoch: one pass over the training set (for a streamed set, the fewest batches any worker's
    pipeline yields in a pass), or ``config.steps_per_epoch`` when set."""
    if config.steps_per_epoch is not None:
        return int(config.steps_per_epoch)
    if not getattr(train_sets, "streams", False):
        return n_batches(len(train_sets), config.batch_size)
    strategy = tf.distribute.get_strategy()
    return train_sets.steps_per_epoch(config.batch_size, num_workers(strategy), strategy.num_replicas_in_sync)


def strategy_label(strategy) -> str:
    """``strategy`` as ``--strategy`` names it: ``one-device``, ``mirrored``, ``multi-worker``, or
    ``default`` (TensorFlow's default strategy); another strategy by its class name."""

    if is_multi_worker(strategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return "one-device"
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return "default"  # outside any scope, get_strategy() is the default strategy
    return type(strategy).__name__


def require_point_loss(training: TrainingConfig, model: str) -> None:
    """Refuse ``robust_l1`` for a model without a log-std output."""
    if training.loss == "robust_l1":
        raise AtomSetsError(f"the robust_l1 loss needs a model that also predicts a log-std (CGAT), not {model}")
