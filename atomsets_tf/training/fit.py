"""Training AtomSets models: featurise, split, fit with early stopping, evaluate.

:func:`fit` is what ``atomsets-tf fit`` runs. It writes, in its output folder:

* ``model.keras``: the best model (lowest validation MAE, or highest ROC-AUC);
* ``metrics.json``: validation and test metrics, epochs run, wall time, ...;
* ``test_predictions.csv``: ``id,target,prediction`` on the test set;
* ``training_log.csv``: one row per epoch.

Every file is written atomically. An interrupted run started again with the
same output folder resumes from its last saved epoch (saved after the first
epoch, then every ``checkpoint_interval_s``, and on SIGINT/SIGTERM at the end
of the epoch). A run with other settings in that folder is refused unless it
is asked to ``restart``, and two processes cannot write to one folder at once
(see :mod:`~atomsets_tf.training.runs`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.pipeline import WeightedSets, compositions_to_sets, make_dataset, n_batches
from atomsets_tf.data.splits import (
    check_disjoint,
    ids_to_indices,
    official_folds,
    random_split,
    split_off_validation,
)
from atomsets_tf.errors import AtomSetsError, DataFormatError, TrainingInterrupted
from atomsets_tf.training.metrics import metric_name, score
from atomsets_tf.training.multi_worker import fit_multi_worker, is_multi_worker
from atomsets_tf.training.runs import (
    RUN_FILE,
    STATE_DIR,
    STATE_FILE,
    run_fingerprint,
    run_folder,
    run_settings,
)

#: Compositional models that :func:`fit` builds from a composition (Table 1 of the paper).
COMPOSITIONAL_MODELS = ("atomsets", "atomsets-v0")
PROTOCOLS = ("paper", "matbench")
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


@dataclass
class ModelConfig:
    """Hyperparameters of an AtomSets head (Table S2 of the paper)."""

    n_layers_before_readout: int = 2
    n_layers_after_readout: int = 2
    units: int = 64
    readout: str | list[str] = "mean"
    activation: str = "relu"
    embedding_dim: int = 32


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and its metrics."""

    model: object
    metrics: dict
    test_ids: list[str] = field(default_factory=list)
    test_predictions: np.ndarray | None = None


def featurize(
    table: data_io.Table, model: str, features_from: str | None = None, progress: bool = False
) -> tuple[WeightedSets, object | None]:
    """A table's entries as the weighted sets ``model`` trains on, and its fixed element table (if any).

    Compositional models (``atomsets``, ``atomsets-v0``) see compositions
    (structures are reduced to theirs); ``atomsets-v0`` looks its elements up in
    MEGNet's V0 table: the JSON table megnet ships, or the embedding layer of
    ``features_from`` (a MEGNet checkpoint or preset). Structural models (see
    :data:`~atomsets_tf.training.features.STRUCTURAL_MODELS`) see features
    tapped from ``features_from`` (default: the paper's parent model).
    """
    from atomsets_tf.data.elements import ElementTable, megnet_element_table
    from atomsets_tf.training.features import DEFAULT_SOURCE, STRUCTURAL_MODELS, structural_sets

    check_model_name(model)
    if model in STRUCTURAL_MODELS:
        return structural_sets(model, features_from or DEFAULT_SOURCE, table, progress), None
    element_table = None
    if model == "atomsets-v0":
        if features_from is None:
            element_table = megnet_element_table()
        else:
            from atomsets_tf.megnet.model import load_megnet

            rows = load_megnet(features_from).embedding_table()
            known = np.ones(len(rows), dtype=bool)
            known[0] = False
            element_table = ElementTable(rows, known, name=f"{features_from} embedding")
    inputs = table.inputs if table.kind == "composition" else [s.composition for s in table.inputs]
    return compositions_to_sets(inputs, table.ids, element_table), element_table


def check_model_name(model: str) -> None:
    """Refuse a name that is not a model :func:`fit` trains."""
    from atomsets_tf.training.features import STRUCTURAL_MODELS

    if model not in COMPOSITIONAL_MODELS and model not in STRUCTURAL_MODELS:
        known = ", ".join([*COMPOSITIONAL_MODELS, *STRUCTURAL_MODELS])
        raise AtomSetsError(f"unknown model {model!r}; choose one of {known}")


def build_model(
    model: str,
    task_type: str,
    train_targets: np.ndarray,
    element_table=None,
    config: ModelConfig | None = None,
    sets: WeightedSets | None = None,
    features_from: str | None = None,
):
    """An untrained :class:`~atomsets_tf.models.AtomSets` for ``model``, standardised on ``train_targets``.

    Structural models need ``sets`` (for the feature width); MLP models are
    AtomSets heads on a set of one element with no layer before the readout.
    """
    from atomsets_tf.models import AtomSets
    from atomsets_tf.training.features import DEFAULT_SOURCE, STRUCTURAL_MODELS

    config = config or ModelConfig()
    feature_dim = n_before = source = None
    if model in STRUCTURAL_MODELS:
        tap, use = STRUCTURAL_MODELS[model]
        feature_dim = int(sets.values[0].shape[1])
        n_before = 0 if use != "atom" else None
        source = {"model": model, "source": str(features_from or DEFAULT_SOURCE), "tap": tap}
    mean, std = 0.0, 1.0
    if task_type == "regression":
        mean = float(np.mean(train_targets))
        std = float(np.std(train_targets)) or 1.0
    return AtomSets(
        feature_dim=feature_dim,
        feature_source=source,
        element_table=None if element_table is None else element_table.table,
        known_elements=None if element_table is None else np.flatnonzero(element_table.known).tolist(),
        trainable_embedding=model != "atomsets-v0",
        embedding_dim=config.embedding_dim,
        n_layers_before_readout=config.n_layers_before_readout if n_before is None else n_before,
        n_layers_after_readout=config.n_layers_after_readout,
        units=config.units,
        readout=config.readout if n_before is None else "mean",
        activation=config.activation,
        task_type=task_type,
        target_mean=mean,
        target_std=std,
        name=model.replace("-", "_"),
    )


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model, spec=None):
    """A compiled inference call of ``model`` (one per model; shape-generic with ``spec``, a dict of TensorSpecs).

    Unlike ``predict_on_batch`` it does not distribute the batch, so it works
    the same inside and outside a ``tf.distribute`` strategy, and it is cheap
    enough to call after every epoch.
    """
    import tensorflow as tf

    if model not in _FORWARD:
        signature = None if spec is None else [spec]
        _FORWARD[model] = tf.function(lambda x: model(x, training=False), input_signature=signature,
                                      reduce_retracing=True, autograph=False)
    return _FORWARD[model]


def predict_sets(model, sets, batch_size: int = 256) -> np.ndarray:
    """Predictions of ``model`` for every example of ``sets``, in order."""
    from atomsets_tf.data.padding import size_bucketed_batches

    forward = _forward(model, sets.tensor_spec() if hasattr(sets, "tensor_spec") else None)
    out = np.empty(len(sets), dtype=np.float64)
    for idx in size_bucketed_batches(sets.sizes(), batch_size):
        values = np.asarray(forward(sets.padded(idx)))
        out[idx] = values[:, 0] if values.ndim == 2 else values  # a second column is a log-std
    return out


def make_splits(
    table: data_io.Table,
    protocol: str = "paper",
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    split_file: str | os.PathLike | Mapping | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices.

    ``paper``: a random split drawn from ``seed + fold``, ``val_fraction`` each for
    validation and test (80/10/10 by default).
    ``matbench``: the official fold ``fold``; validation is ``val_fraction`` of its
    training part.
    ``split_file`` (any protocol): a JSON file ``{"train": [ids], "val": [ids],
    "test": [ids]}``, or that mapping itself; without ``"val"``, validation is
    ``val_fraction`` of ``train``.
    """
    if not 0 < val_fraction < 0.5:
        raise DataFormatError(f"the validation fraction must be in (0, 0.5), got {val_fraction}")
    if split_file is not None:
        return _explicit_splits(table, split_file, val_fraction, seed)
    if protocol == "paper":
        return random_split(len(table), (1 - 2 * val_fraction, val_fraction, val_fraction), seed=seed + fold)
    if protocol == "matbench":
        task = table.meta.get("task") or Path(table.source).name.split(".")[0]
        folds = official_folds(task)
        if not 0 <= fold < len(folds):
            raise DataFormatError(f"fold must be in 0..{len(folds) - 1}, got {fold}")
        train_ids, test_ids = folds[fold]
        train, val = split_off_validation(ids_to_indices(table.ids, train_ids), val_fraction, seed=seed)
        return train, val, ids_to_indices(table.ids, test_ids)
    raise DataFormatError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _explicit_splits(table: data_io.Table, split_file, val_fraction: float, seed: int):
    """:func:`make_splits` of a split file (or mapping): every id known and listed once, training apart."""
    what = "the split" if isinstance(split_file, Mapping) else f"split file {split_file}"
    spec = split_file
    if not isinstance(split_file, Mapping):
        try:
            spec = json.loads(Path(split_file).read_text())
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{what}: expected JSON with 'train' and 'test' id lists ({exc})") from None
    if not isinstance(spec, Mapping) or not {"train", "test"} <= spec.keys():
        raise DataFormatError(f"{what}: expected JSON with 'train' and 'test' id lists (and optionally 'val')")
    names = [name for name in ("train", "val", "test") if name in spec]
    parts = {name: ids_to_indices(table.ids, spec[name], f"{what}, {name!r}") for name in names}
    check_disjoint({name: spec[name] for name in names}, what)
    if "val" in parts:
        return parts["train"], parts["val"], parts["test"]
    train, val = split_off_validation(parts["train"], val_fraction, seed=seed)
    return train, val, parts["test"]


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the header and the first ``epochs`` complete rows of a CSV log (rows past a resume point are redone)."""
    if path.is_file():
        from atomsets_tf.utils.io import atomic_path

        lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines[: epochs + 1]))


def _resume(model, keep, out_dir, config: TrainingConfig, fingerprint: Mapping | None):
    """Restore ``out_dir``'s training state, if any, into ``model`` and ``keep``; the callbacks that save it.

    Returns ``(epochs already done, [CSV log, checkpoint])``.
    """
    from atomsets_tf.training.callbacks import EpochLog, TrainingCheckpoint, load_training_state

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
    from atomsets_tf.training.losses import REGRESSION_LOSSES, robust_l1
    from atomsets_tf.training.transfer import make_optimizer

    if config.loss not in REGRESSION_LOSSES:
        raise AtomSetsError(f"loss must be one of {', '.join(REGRESSION_LOSSES)}, got {config.loss!r}")
    loss = "binary_crossentropy" if task_type == "classification" else (
        robust_l1 if config.loss == "robust_l1" else config.loss)
    if optimizer is None:
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    model.compile(optimizer=optimizer, loss=loss)
    return model


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

    Returns a dict with ``epochs_run``, ``best_epoch`` and ``resumed_from_epoch``.
    """
    from atomsets_tf.training.callbacks import BatchCounter, EpochProgress, GracefulStop, KeepBest, ValidationScore

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
        from atomsets_tf.training.schedules import scheduler_callback

        callbacks.insert(0, scheduler_callback(config.schedule, config.learning_rate, config.epochs,
                                               config.schedule_period))
    if progress:
        callbacks.append(EpochProgress(config.epochs))
    steps = n_batches(len(train_idx), config.batch_size)
    counter = BatchCounter(steps, resumed)
    train_ds = make_dataset(train_sets, targets[train_idx], config.batch_size, shuffle=True, seed=config.seed,
                            epochs=config.epochs, first_epoch=resumed, epoch_source=counter.epochs_completed)
    multi_worker = is_multi_worker()
    fit_fn = partial(fit_multi_worker, model) if multi_worker else model.fit  # Keras' fit fails there
    with stop.handling_signals(enabled=not multi_worker):  # a signal to one worker would desynchronise them
        history = fit_fn(train_ds, epochs=config.epochs, initial_epoch=resumed, callbacks=[counter, *callbacks],
                         verbose=0, steps_per_epoch=steps, shuffle=False)
    epochs_run = resumed + len(history.epoch)
    if stop.signum is not None and keep.stopped_epoch is None and epochs_run < config.epochs:
        raise TrainingInterrupted(stop.describe(), stop.signum)
    return {"epochs_run": epochs_run, "best_epoch": keep.best_epoch + 1, "resumed_from_epoch": resumed}


def fit(
    data: str | os.PathLike | data_io.Table,
    model: str = "atomsets",
    task_type: str | None = None,
    protocol: str = "paper",
    fold: int = 0,
    training: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    strategy=None,
    features_from: str | None = None,
    val_fraction: float = 0.1,
    split_file: str | os.PathLike | None = None,
    restart: bool = False,
) -> FitResult:
    """Train an AtomSets model (Table 1 of the paper) on a data set and evaluate it on its test split.

    Args:
        data: a file, a matbench task name, or a :class:`~atomsets_tf.data.io.Table`.
        model: ``"atomsets"`` (trainable element embedding), ``"atomsets-v0"``
            (MEGNet's V0 element embedding, fixed), or a structural model of
            :data:`~atomsets_tf.training.features.STRUCTURAL_MODELS`
            (``atomsets-v1``, ``mlp-f``, ...).
        task_type: ``"regression"`` or ``"classification"``; inferred from the
            targets when ``None``.
        protocol: ``"paper"`` (random 80/10/10) or ``"matbench"`` (official fold).
        fold: which random split or official fold.
        training: optimisation settings.
        model_config: AtomSets hyperparameters.
        out_dir: where to write ``model.keras``, ``metrics.json``, ... (nothing
            is written when ``None``). An interrupted run in it resumes; a run
            with other settings there is refused (see :mod:`~atomsets_tf.training.runs`).
        progress: print a line every few epochs.
        features_from: the MEGNet (checkpoint path or preset) that structural
            models tap, and that ``atomsets-v0`` may take V0 from.
        val_fraction, split_file: see :func:`make_splits`.
        strategy: a ``tf.distribute.Strategy`` (see
            :func:`~atomsets_tf.training.strategy.get_strategy`); the default
            strategy when ``None``. ``training.batch_size`` is the global batch.
        restart: discard the run already in ``out_dir`` (its state and outputs) and start afresh.

    Raises:
        RunSettingsError: ``out_dir`` holds a run with other settings (and not ``restart``).
        RunLockedError: another process is writing to ``out_dir``.
        TrainingInterrupted: SIGINT or SIGTERM arrived; the state was saved.
    """
    training = training or TrainingConfig()
    require_point_loss(training, model)
    check_model_name(model)
    table, targets, task_type = load_targets(data, task_type)
    splits = make_splits(table, protocol, fold, training.seed, val_fraction, split_file)
    settings = run_settings(fit_model_settings(model, model_config, features_from), table, task_type, splits,
                            protocol, fold, val_fraction, split_file, training)
    with run_folder(out_dir, run_fingerprint(settings), restart, strategy) as folder:
        sets, element_table = featurize(table, model, features_from, progress)

        def make():
            net = build_model(model, task_type, targets[splits[0]], element_table, model_config, sets, features_from)
            return net, None

        extra = {"model": model, "protocol": protocol, "fold": fold,
                 "model_config": asdict(model_config or ModelConfig())}
        return run_training(table, sets, targets, task_type, splits, make, training, folder, progress, strategy,
                            extra, settings=settings)


def fit_model_settings(model: str, model_config: ModelConfig | None = None, features_from: str | None = None) -> dict:
    """What :func:`fit` trains, as :func:`~atomsets_tf.training.runs.run_settings` records it."""
    return {"model": model, "model_config": asdict(model_config or ModelConfig()), "features_from": features_from}


def strategy_label(strategy) -> str:
    """``strategy`` as ``--strategy`` names it: ``one-device``, ``mirrored``, ``multi-worker``, or
    ``default`` (TensorFlow's default strategy); another strategy by its class name."""
    import tensorflow as tf

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


def load_targets(data, task_type: str | None = None) -> tuple[data_io.Table, np.ndarray, str]:
    """The table, its checked targets and its task type (inferred when ``None``)."""
    table = data if isinstance(data, data_io.Table) else data_io.load(data)
    targets = table.require_targets()
    task_type = task_type or table.task_type()
    if task_type == "classification" and not np.isin(targets, (0.0, 1.0)).all():
        raise DataFormatError("classification needs targets that are 0/1 or true/false")
    return table, targets, task_type


def run_training(
    table: data_io.Table,
    sets,
    targets: np.ndarray,
    task_type: str,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    make_model,
    training: TrainingConfig,
    out_dir=None,
    progress: bool = True,
    strategy=None,
    extra_metrics: dict | None = None,
    save_model=None,
    settings: Mapping | None = None,
) -> FitResult:
    """Build (inside ``strategy``), train and evaluate a model; write its outputs.

    Args:
        out_dir: the folder this process writes to (from
            :func:`~atomsets_tf.training.runs.run_folder`, which locks and checks it).
        make_model: called inside the strategy's scope; returns ``(model,
            optimizer or None)``. ``model`` maps a padded batch of ``sets`` to
            ``[B, 1]`` predictions in target units.
        save_model: ``save_model(model, path)`` writes ``model.keras``; defaults
            to ``model.save(path)``.
        extra_metrics: recorded in ``metrics.json`` first.
        settings: the run's :func:`~atomsets_tf.training.runs.run_settings`; their
            fingerprint goes beside the training state and into ``metrics.json``.
    """
    import keras
    import tensorflow as tf

    train_idx, val_idx, test_idx = splits
    if len(train_idx) == 0 or len(val_idx) == 0 or len(test_idx) == 0:
        raise DataFormatError(f"too few entries ({len(table)}) for a train/validation/test split")
    if training.mixed_precision not in (None, "mixed_float16", "mixed_bfloat16"):
        raise AtomSetsError(f"mixed_precision must be mixed_float16 or mixed_bfloat16, got {training.mixed_precision!r}")
    start = time.perf_counter()
    keras.utils.set_random_seed(training.seed)
    strategy = strategy or tf.distribute.get_strategy()
    fingerprint = None if settings is None else run_fingerprint(settings)
    previous_policy = keras.config.dtype_policy()
    try:
        if training.mixed_precision:
            keras.config.set_dtype_policy(training.mixed_precision)
        with strategy.scope():
            net, optimizer = make_model()
            run = train(net, sets, targets, train_idx, val_idx, task_type, training, out_dir, progress, optimizer,
                        fingerprint)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    run.update(strategy=strategy_label(strategy), replicas=int(strategy.num_replicas_in_sync),
               wall_time_s=round(time.perf_counter() - start, 3))
    test_pred = predict_sets(net, sets.subset(test_idx))
    metrics = run_metrics(table, targets, task_type, splits, predict_sets(net, sets.subset(val_idx)), test_pred,
                          {**(extra_metrics or {})}, run, training, fingerprint)
    test_ids = [table.ids[i] for i in test_idx]
    if out_dir is not None:
        write_outputs(out_dir, net, metrics, test_ids, targets[test_idx], test_pred, save_model)
        # The run is complete: its resume state must not leak into a later run in the same folder.
        shutil.rmtree(Path(out_dir) / STATE_DIR, ignore_errors=True)
    return FitResult(net, metrics, test_ids, test_pred)


def run_metrics(table, targets, task_type, splits, val_pred, test_pred, extra: dict, run: dict, training,
                fingerprint: Mapping | None) -> dict:
    """The ``metrics.json`` record of a trained run: ``extra``, the data, the scores, ``run``, the settings."""
    train_idx, val_idx, test_idx = splits
    name = metric_name(task_type)
    metrics = {
        **extra,
        "data": table.meta.get("task") or table.source,
        "task_type": task_type,
        "target": table.target_name,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(test_idx)),
        f"val_{name}": score(task_type, targets[val_idx], val_pred)[name],
        f"test_{name}": score(task_type, targets[test_idx], test_pred)[name],
        **run,
        "training": asdict(training),
        "versions": versions(),
    }
    if fingerprint is not None:
        metrics["fingerprint"] = dict(fingerprint)
    return metrics


def write_outputs(out_dir, model, metrics: dict, ids, targets, predictions, save_model=None) -> None:
    """Write ``model.keras`` (unless ``model`` is None), ``metrics.json`` and ``test_predictions.csv`` atomically."""
    from atomsets_tf.utils.io import atomic_path, write_json_atomic

    out = Path(out_dir)
    if model is not None:
        with atomic_path(out / "model.keras") as tmp:
            (save_model or (lambda m, p: m.save(p)))(model, tmp)
    write_json_atomic(out / "metrics.json", metrics)
    write_predictions_csv(out / "test_predictions.csv", ids, predictions, targets)


def write_predictions_csv(path, ids, predictions, targets=None) -> None:
    """Write ``id,prediction`` (or ``id,target,prediction``) CSV atomically."""
    import csv

    from atomsets_tf.utils.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "prediction"] if targets is None else ["id", "target", "prediction"])
        for k, i in enumerate(ids):
            row = [i, repr(float(predictions[k]))]
            if targets is not None:
                row.insert(1, repr(float(targets[k])))
            w.writerow(row)


def versions() -> dict:
    """Versions of the packages that determine the numbers."""
    import platform

    import keras
    import tensorflow as tf

    from atomsets_tf import __version__

    return {
        "atomsets_tf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }

