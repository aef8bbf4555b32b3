"""The training engine: fit a Keras model on padded sets with early stopping, resumably, under any strategy.

:func:`train` compiles the model, restores an interrupted run's state, and runs
Keras' ``fit`` (or the multi-worker loop) with the engine's callbacks: the
validation score, early stopping that keeps the best weights, the per-epoch log,
the resumable state (saved after the first epoch, then every
``checkpoint_every`` seconds or steps, mid-epoch too, and on SIGINT/SIGTERM after
the current batch: a rerun resumes at that step).
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
from atomsets_tf.utils.intervals import parse_save_interval
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
        checkpoint_every: least interval between two saves of the resumable
            training state after the first epoch's, also mid-epoch (a killed
            run loses at most this much work; SIGINT and SIGTERM save it after
            the current batch): seconds as a number, or a string in one of
            :data:`~atomsets_tf.utils.intervals.INTERVAL_FORMS` (``"30s"``,
            ``"10min"``, ``"2h"``, ``"500steps"``).
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
        stream_above: a table read from a prepared dataset with more entries
            than this streams from its shards (``0``: always); fewer are read
            into memory and train exactly as the file they were prepared from.
            ``None`` = 200,000 (:data:`~atomsets_tf.data.streaming.DEFAULT_STREAM_ABOVE`).
            Bootstrap samples need the training set in memory.
        input_pipelines: a streamed training set is read as this many workers
            of a multi-worker run read it, each batch joining one batch of every
            worker's input pipeline, so that one process reproduces their run
            step for step (streamed prepared datasets, outside multi-worker
            training, only).
    """

    epochs: int = 1000
    patience: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_every: float | str = 30.0
    loss: str = "mae"
    schedule: str = "constant"
    schedule_period: int = 130
    optimizer: str = "adam"
    weight_decay: float = 1e-6
    mixed_precision: str | None = None
    steps_per_epoch: int | None = None
    stream_above: int | None = None
    input_pipelines: int = 1

    def __post_init__(self):
        parse_save_interval(self.checkpoint_every)  # a bad value fails here, before any work
        if self.stream_above is not None and int(self.stream_above) < 0:
            raise AtomSetsError(f"stream_above must be 0 or more (or None for the default), got {self.stream_above}")
        if int(self.input_pipelines) < 1:
            raise AtomSetsError(f"input_pipelines must be 1 or more, got {self.input_pipelines}")


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the header and the first ``epochs`` complete rows of a CSV log (rows past a resume point are redone)."""
    if path.is_file():

        lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines[: epochs + 1]))


def _resume(model, keep, out_dir, config: TrainingConfig, fingerprint: Mapping | None, steps: int):
    """Restore ``out_dir``'s training state, if any, into ``model`` and ``keep``; the callbacks that save it.

    Returns ``(counter, [CSV log, checkpoint])``: a :class:`BatchCounter` starting where the state was saved
    (``(0, 0)`` without one), and the savers, their checkpoint saving mid-epoch outside multi-worker training.
    """

    state_path = Path(out_dir) / STATE_DIR / STATE_FILE
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = load_training_state(str(state_path), model)
    counter = BatchCounter(steps)
    if state is not None:
        counter = BatchCounter(steps, state["epochs_completed"], state["step"] % steps)
        keep.best_score, keep.best_epoch, keep.best_weights = (
            state["best_score"], state["best_epoch"], state["best_weights"])
        _truncate_log(Path(out_dir) / TRAINING_LOG, counter.first_epoch)
    # The log row is written before the state that counts its epoch, so a resume never loses a row.
    checkpoint = TrainingCheckpoint(str(state_path), keep, parse_save_interval(config.checkpoint_every),
                                    None if fingerprint is None else dict(fingerprint),
                                    str(state_path.with_name(RUN_FILE)), position=counter.position,
                                    mid_epoch=not is_multi_worker())
    if state is not None and counter.first_step:
        checkpoint.pending_metrics = state["metrics"]  # the resumed epoch's running loss
    return counter, [EpochLog(Path(out_dir) / TRAINING_LOG, append=state is not None), checkpoint]


def _interruption(checkpoint, out_dir) -> str:
    """What an interrupted run kept, for :class:`~atomsets_tf.errors.TrainingInterrupted`'s message."""
    if checkpoint is None:
        return "interrupted; nothing was saved (no output folder)"
    if checkpoint.saved_epochs is None:
        return f"interrupted before the first epoch ended; nothing was saved in {out_dir}"
    where = f"after epoch {checkpoint.saved_epochs}"
    if checkpoint.saved_step:
        where = f"at batch {checkpoint.saved_step} of epoch {checkpoint.saved_epochs + 1}"
    return (f"interrupted; the training state was saved in {Path(checkpoint.path).parent} ({where}), "
            "run the same command to resume")


def _compiled(model, config: TrainingConfig, task_type: str, optimizer=None):
    """``model`` compiled with the task's loss and ``optimizer`` (default: ``config``'s at its learning rate)."""

    if config.loss not in REGRESSION_LOSSES:
        raise AtomSetsError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}, got {config.loss!r}")
    if optimizer is None:
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    model.compile(optimizer=optimizer, loss=training_loss(model, config, task_type))
    # Built here, the optimizer's slots exist before Keras traces the training step. Left to the trace (as Keras
    # does outside a tf.distribute scope), they are created inside it, and tf.function traces the step twice:
    # a MEGNet's training step then costs two traces (about 11 s each on 2 cores) instead of one.
    model.optimizer.build(model.trainable_variables)
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
    from it, at the batch it was saved after (mid-epoch too: the epoch's
    remaining batches, in their order). SIGINT or SIGTERM (outside multi-worker
    training) saves the state after the current batch and raises
    :class:`~atomsets_tf.errors.TrainingInterrupted`.

    ``train_weights`` (``(len(train_idx), K)``) weighs each training entry in each of an ensemble's K
    members' losses (bootstrap multiplicities); in-memory sets only.

    Returns a dict with ``epochs_run``, ``best_epoch``, ``resumed_from_epoch`` and ``resumed_from_step``.
    """

    train_sets, val_sets = sets.subset(train_idx), sets.subset(val_idx)
    if not model.built:  # a subclassed model makes its weights on its first call: before the optimizer's slots
        model(train_sets.padded([0]), training=False)
    _compiled(model, config, task_type, optimizer)
    keep = KeepBest(config.patience)
    steps = _steps_per_epoch(train_sets, config)
    counter, checkpoint = BatchCounter(steps), None
    callbacks: list = [ValidationScore(lambda: predict_sets(model, val_sets), targets[val_idx], task_type), keep]
    if out_dir is not None:
        counter, savers = _resume(model, keep, out_dir, config, fingerprint, steps)
        checkpoint = savers[-1]
    stop = GracefulStop(partial(_interruption, checkpoint, out_dir), position=counter.position,
                        save_midway=None if checkpoint is None else checkpoint.save_position)
    callbacks += [stop, *(savers if out_dir is not None else [])]
    if config.schedule != "constant":
        callbacks.insert(0, scheduler_callback(config.schedule, config.learning_rate, config.epochs,
                                               config.schedule_period))
    if progress:
        callbacks.append(EpochProgress(config.epochs, best=keep.best_score))
    multi_worker = is_multi_worker()
    dataset_at = _training_data(train_sets, targets[train_idx], train_weights, config, counter, multi_worker)
    fit_fn = partial(fit_multi_worker, model) if multi_worker else model.fit  # Keras' fit fails there
    reading = getattr(train_sets, "reading", nullcontext)  # a streamed set names a corrupt shard
    with stop.handling_signals(enabled=not multi_worker), reading():  # (signals: one worker would desynchronise)
        epochs_run = counter.first_epoch + _fit_from_position(fit_fn, dataset_at, model, keep, counter, config,
                                                              [counter, *callbacks])
    if stop.signum is not None and keep.stopped_epoch is None and epochs_run < config.epochs:
        raise TrainingInterrupted(stop.describe(), stop.signum)
    return {"epochs_run": epochs_run, "best_epoch": keep.best_epoch + 1, "resumed_from_epoch": counter.first_epoch,
            "resumed_from_step": counter.first_step}


def _training_data(train_sets, train_targets, train_weights, config: TrainingConfig, counter: BatchCounter,
                   multi_worker: bool):
    """A function making the training dataset from where ``counter`` is now (each ``fit`` of a run makes one)."""
    streams = getattr(train_sets, "streams", False)
    if train_weights is not None:
        if streams:
            raise AtomSetsError("bootstrap weights need a training set in memory, not a streamed prepared dataset "
                                "(a larger stream_above, --stream-above, reads it into memory)")
        train_targets = np.column_stack([train_targets, train_weights])
    if config.input_pipelines > 1 and (multi_worker or not streams):
        raise AtomSetsError(f"input_pipelines={config.input_pipelines} reads a streamed prepared dataset as that many "
                            "workers would, in one process: " + ("this run has real workers" if multi_worker else
                                                                 "this training set is in memory"))
    if multi_worker and streams:  # each worker reads its own shards
        return lambda: train_sets.dataset_fn(train_targets, config.batch_size, shuffle=True, seed=config.seed,
                                             first_epoch=counter.position()[0])
    return lambda: make_dataset(train_sets, train_targets, config.batch_size, shuffle=True, seed=config.seed,
                                epochs=config.epochs, position_source=counter.position,
                                pipelines=config.input_pipelines)


def _fit_from_position(fit_fn, dataset_at, model, keep: KeepBest, counter: BatchCounter, config: TrainingConfig,
                       callbacks: list) -> int:
    """Train from ``counter``'s start to ``config.epochs``; the number of epochs run.

    Started mid-epoch, a first ``fit`` runs the epoch's remaining batches (its epoch-end callbacks then run as
    in an uninterrupted run), a second one the epochs after it.
    """
    epoch, step, steps = counter.first_epoch, counter.first_step, counter.steps_per_epoch
    common = {"callbacks": callbacks, "verbose": 0, "shuffle": False}
    epochs_run = 0
    if step:
        keep.restore_at_end = False  # the run goes on after this fit
        history = fit_fn(dataset_at(), epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps - step, **common)
        keep.restore_at_end = True
        epochs_run, epoch = len(history.epoch), epoch + 1
        if model.stop_training or epoch >= config.epochs:
            keep.restore_best()
            return epochs_run
    history = fit_fn(dataset_at(), epochs=config.epochs, initial_epoch=epoch, steps_per_epoch=steps, **common)
    return epochs_run + len(history.epoch)


def _steps_per_epoch(train_sets, config: TrainingConfig) -> int:
    """Steps of one epoch: one pass over the training set (for a streamed set, the fewest batches any worker's
    pipeline yields in a pass), or ``config.steps_per_epoch`` when set."""
    if config.steps_per_epoch is not None:
        return int(config.steps_per_epoch)
    if not getattr(train_sets, "streams", False):
        return n_batches(len(train_sets), config.batch_size)
    strategy = tf.distribute.get_strategy()
    return train_sets.steps_per_epoch(config.batch_size, num_workers(strategy), strategy.num_replicas_in_sync,
                                      pipelines=config.input_pipelines)


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

