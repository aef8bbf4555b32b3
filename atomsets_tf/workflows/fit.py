"""Training AtomSets models: featurise, split, fit with early stopping, evaluate.

:func:`fit` is what ``atomsets-tf fit`` runs. It writes, in its output folder:

* ``model.keras``: the best model (lowest validation MAE, or highest ROC-AUC);
* ``metrics.json``: validation and test metrics, epochs run, wall time, ...;
* ``test_predictions.csv``: ``id,target,prediction`` on the test set;
* ``training_log.csv``: one row per epoch;
* with matplotlib (the ``plot`` extra): ``parity.png`` (``roc.png`` for a classifier) of the test set and
  ``training_curve.png``, named under ``"plots"`` in ``metrics.json``.

Every file is written atomically. An interrupted run started again with the
same output folder resumes from its last saved state, mid-epoch too, at the
batch it was saved after (saved after the first epoch, then every
``checkpoint_every`` (seconds or training steps), and on SIGINT/SIGTERM after
the current batch). A run with other settings in that folder is refused unless it
is asked to ``restart``, and two processes cannot write to one folder at once
(see :mod:`~atomsets_tf.training.runs`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf.data import io as data_io
from atomsets_tf.data.inputs import DataLike, as_table
from atomsets_tf.data.splits import make_splits
from atomsets_tf.data.targets import check_output_kind, task_output_kind
from atomsets_tf.errors import AtomSetsError, DataFormatError, SmallDataWarning
from atomsets_tf.models.atomsets.builder import ModelConfig, build_model, featurize
from atomsets_tf.models.atomsets.element_sources import check_element_features, element_features_settings, v0_sources
from atomsets_tf.models.base import BuildRequest, predict_sets
from atomsets_tf.models.ensemble import Ensemble
from atomsets_tf.models.loading import load_model
from atomsets_tf.models.registry import FIT_MODELS, entry, family
from atomsets_tf.training.metrics import fit_std_scale, metric_name, score, uncertainty_scores
from atomsets_tf.training.runs import (
    METRICS_FILE,
    STATE_DIR,
    is_finished,
    run_fingerprint,
    run_folder,
    run_settings,
)
from atomsets_tf.training.trainer import TrainingConfig, strategy_label, train
from atomsets_tf.utils.io import write_json_atomic
from atomsets_tf.workflows.outputs import (
    target_label,
    versions,
    write_outputs,
    write_predictions_csv,
    write_run_plots,
)

#: Re-exported: the names users import from here (the README, the tutorials).
__all__ = ["FitResult", "ModelConfig", "TrainingConfig", "build_model", "featurize", "fit", "load_targets",
           "make_splits", "predict_sets", "run_training", "versions", "write_outputs", "write_predictions_csv"]



@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and its metrics."""

    model: object
    metrics: dict
    test_ids: list[str] = field(default_factory=list)
    test_predictions: np.ndarray | None = None
    test_std: np.ndarray | None = None


def read_back(out_dir: str | os.PathLike | None) -> FitResult | None:
    """The finished run in ``out_dir`` (its settings already checked against the rerun's), read back from its
    files instead of trained again; ``None`` when there is none. Its metrics say ``"read_back": true``.

    Every worker of a multi-worker run reads the shared folder, so all of them read back, or none.
    """
    if out_dir is None or not is_finished(out_dir) or not (Path(out_dir) / "model.keras").is_file():
        return None
    folder = Path(out_dir)
    metrics = {**json.loads((folder / METRICS_FILE).read_text()), "read_back": True}
    ids, predictions, std = [], [], []
    with open(folder / "test_predictions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            ids.append(row["id"])
            predictions.append(float(row.get("probability") or row["prediction"]))
            std.append(float(row["std"]) if row.get("std") else np.nan)
    return FitResult(load_model(folder / "model.keras"), metrics, ids, np.array(predictions),
                     np.array(std) if ids and not np.isnan(std).all() else None)


def check_model_name(model: str) -> None:
    """Refuse a name that is not a model :func:`fit` trains."""
    if model not in FIT_MODELS:
        raise AtomSetsError(f"unknown model {model!r}; choose one of {', '.join(FIT_MODELS)}")


def fit(
    data: DataLike,
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
    element_features: list[str] | None = None,
) -> FitResult:
    """Build and train a model of the zoo (AtomSets: Table 1 of the paper) on a data set; evaluate it on its test split.

    Args:
        data: a file, a matbench task name, a :class:`~atomsets_tf.data.io.Table`, or data in memory that
            :func:`~atomsets_tf.data.inputs.as_table` reads (a pandas ``DataFrame`` with a target column,
            structures, ASE ``Atoms`` or formulas: give their targets with ``as_table(..., targets=...)``).
        model: a zoo name that a family builds (:data:`~atomsets_tf.models.registry.FIT_MODELS`): ``"atomsets"``,
            ``"atomsets-v0"``, a structural model (``atomsets-v1``, ``mlp-f``, ...), or a registered family's.
        task_type: ``"regression"`` or ``"classification"``; inferred from the
            targets when ``None``.
        protocol: ``"paper"`` (random 80/10/10) or ``"matbench"`` (official fold).
        fold: which random split or official fold.
        training: optimisation settings.
        model_config: AtomSets hyperparameters, the output kind and the ensemble: ``ensemble`` K > 1 trains an
            :class:`~atomsets_tf.models.ensemble.Ensemble` of K seeds in one Keras model (losses summed, early
            stopping on the ensemble's validation score; its std rescaled on validation; ``bootstrap``: each
            member its own bootstrap sample, as loss weights).
        out_dir: where to write ``model.keras``, ``metrics.json``, ... (nothing
            is written when ``None``). An interrupted run in it resumes; a run
            with other settings there is refused (see :mod:`~atomsets_tf.training.runs`).
        progress: print a line every few epochs.
        features_from: the MEGNet (checkpoint path or preset) that structural
            models tap, and that ``atomsets-v0`` may take V0 from.
        element_features: the V0 sources of ``atomsets-v0``, concatenated (unscaled) per element:
            ``"megnet"``, ``"matscholar"``, MEGNet presets or checkpoints (see
            :mod:`~atomsets_tf.models.atomsets.element_sources`); ``None``: V0 as ``features_from`` says, and
            without it the paper's own, the formation-energy MEGNet's embedding (``DEFAULT_V0_SOURCES``).
        val_fraction, split_file: see :func:`make_splits`.
        strategy: a ``tf.distribute.Strategy`` (see
            :func:`~atomsets_tf.training.strategy.get_strategy`); the default
            strategy when ``None``. ``training.batch_size`` is the global batch.
        restart: discard the run already in ``out_dir`` (its state and outputs) and start afresh.
    Raises:
        RunSettingsError: ``out_dir`` holds a run with other settings (and not ``restart``).
        RunLockedError: another process is writing to ``out_dir``.
        TrainingInterrupted: SIGINT or SIGTERM arrived; the state was saved.
        AtomSetsError: an unknown ``element_features`` source (naming it), or ``element_features``
            with another model than ``atomsets-v0`` or with ``features_from``.
    """
    training = training or TrainingConfig()
    check_model_name(model)
    owner = family(entry(model).family)
    owner.check_training(training, model)
    element_features = v0_sources(model, features_from, element_features)  # the default V0, recorded as such
    table, targets, task_type = load_targets(data, task_type)
    splits = make_splits(table, protocol, fold, training.seed, val_fraction, split_file)
    model_config = model_config or ModelConfig()
    output = resolve_output(table, task_type, model_config.output, targets[splits[0]])
    ensemble = int(model_config.ensemble)
    trained = fit_model_settings(model, model_config, features_from, output, element_features)
    settings = run_settings(trained, table, task_type, splits, protocol, fold, val_fraction, split_file, training)
    weights = member_weights(ensemble, model_config.bootstrap, len(splits[0]), training.seed)  # before the folder
    with run_folder(out_dir, run_fingerprint(settings), restart, strategy) as folder:
        if (finished := read_back(out_dir)) is not None:
            return finished
        request = BuildRequest(model, task_type, targets[splits[0]], model_config, output, features_from,
                               element_features, progress)
        sets = owner.examples(request, table, stream_above=training.stream_above)
        make = model_factory(owner, request, sets, training.seed)
        extra = {"model": model, "protocol": protocol, "fold": fold, "output": output, "ensemble": ensemble,
                 "model_config": asdict(replace(model_config, output=output))}
        return run_training(table, sets, targets, task_type, splits, make, training, folder, progress, strategy,
                            extra, settings=settings, train_weights=weights)


def model_factory(owner, request: BuildRequest, sets, seed: int):
    """The ``make_model`` of :func:`run_training` for :func:`fit`: one model that ``owner`` (a family) builds for
    ``request``, or an :class:`~atomsets_tf.models.ensemble.Ensemble` of ``request.config.ensemble`` members,
    member k seeded with ``seed + 1000 k``."""
    base = request.model.replace("-", "_")

    def make_one(name: str):
        return owner.build(replace(request, name=name), sets), None

    members = int(getattr(request.config, "ensemble", 1))
    if members <= 1:
        return lambda: make_one(base)
    return ensemble_of(lambda k: make_one(f"{base}_member_{k}"), members, seed, f"{base}_ensemble")


def ensemble_of(make_member, members: int, seed: int, name: str):
    """The ``make_model`` of an :class:`~atomsets_tf.models.ensemble.Ensemble` of ``members`` models, member k
    made by ``make_member(k)`` (which returns ``(model, optimizer or None)``) after seeding with ``seed + 1000 k``,
    so that each member starts from its own weights; the last member's optimizer serves them all."""

    def make():
        models, optimizer = [], None
        for k in range(members):
            keras.utils.set_random_seed(seed + 1000 * k)
            member, optimizer = make_member(k)
            models.append(member)
        return Ensemble(models, name=name), optimizer

    return make


def resolve_output(table: data_io.Table, task_type: str, output: str | None, train_targets: np.ndarray) -> str:
    """The output kind of a model trained on ``table``: ``linear`` for a classifier; ``output``, or (``None``) the
    one the table's Matbench task calls for; checked against the training targets."""
    if task_type == "classification":
        if output not in (None, "linear"):
            raise AtomSetsError(f"a {output} output is for regression targets; {table.source} is a classification task")
        return "linear"
    kind = task_output_kind(table.meta.get("task")) if output is None else output
    return check_output_kind(kind, train_targets, table.source or "the data")


def member_weights(ensemble: int, bootstrap: bool, n_train: int, seed: int) -> np.ndarray | None:
    """The ensemble members' bootstrap weights of the training entries (``None`` without ``bootstrap``).

    Raises:
        AtomSetsError: ``bootstrap`` without an ensemble.
    """
    if not bootstrap:
        return None
    if ensemble < 2:
        raise AtomSetsError("bootstrap samples are drawn per member of an ensemble: use it with ensemble >= 2")
    return bootstrap_weights(n_train, ensemble, seed)


def bootstrap_weights(n: int, members: int, seed: int) -> np.ndarray:
    """``(n, members)`` bootstrap multiplicities: column k counts how often each of ``n`` training entries is
    drawn in member k's sample of ``n`` draws with replacement (NumPy, seeded by ``seed`` and k)."""
    return np.stack([np.bincount(np.random.default_rng([seed, k]).integers(0, n, n), minlength=n)
                     for k in range(members)], axis=1).astype(np.float32)


def fit_model_settings(model: str, model_config: ModelConfig | None = None, features_from: str | None = None,
                       output: str = "linear", element_features: list[str] | None = None) -> dict:
    """What :func:`fit` trains, as :func:`~atomsets_tf.training.runs.run_settings` records it: ``output`` is the
    resolved output kind. An output, ensemble, bootstrap or ``element_features`` at its default is left out, so
    that runs recorded before those options existed keep their fingerprint.

    Raises:
        AtomSetsError: bad ``element_features`` (see
            :func:`~atomsets_tf.models.atomsets.element_sources.check_element_features`), naming the source.
    """
    config = model_config or ModelConfig()
    settings = {"model": model, "model_config": config.architecture(), "features_from": features_from}
    if element_features is not None:
        check_element_features(model, features_from, element_features)
        settings["element_features"] = element_features_settings(element_features)
    if output != "linear":
        settings["output"] = output
    if config.ensemble > 1:
        settings["ensemble"] = int(config.ensemble)
    if config.bootstrap:
        settings["bootstrap"] = True
    return settings


def load_targets(data, task_type: str | None = None) -> tuple[data_io.Table, np.ndarray, str]:
    """The table of ``data`` (anything :func:`~atomsets_tf.data.inputs.as_table` reads), its checked targets and
    its task type (inferred when ``None``)."""
    table = as_table(data)
    targets = table.require_targets()
    task_type = task_type or table.task_type()
    if task_type == "classification" and not np.isin(targets, (0.0, 1.0)).all():
        raise DataFormatError("classification needs targets that are 0/1 or true/false")
    return table, targets, task_type


#: Fewer validation entries than this make early stopping, and an ensemble's std rescale factor, rest on too
#: little: a :class:`~atomsets_tf.errors.SmallDataWarning` says so.
MIN_RELIABLE_ENTRIES = 20


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
    train_weights: np.ndarray | None = None,
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
        train_weights: per-member weights of the training entries (an ensemble's bootstrap samples).

    An :class:`~atomsets_tf.models.ensemble.Ensemble` gets its ``std_scale`` fitted on the validation set, and
    ``metrics.json`` the uncertainty scores (:func:`~atomsets_tf.training.metrics.uncertainty_scores`) of the
    validation and test sets, with the raw spread and rescaled.
    """
    train_idx, val_idx, test_idx = splits
    if len(train_idx) == 0 or len(val_idx) == 0 or len(test_idx) == 0:
        raise DataFormatError(f"too few entries ({len(table)}) for a train/validation/test split: each part needs "
                              "at least one entry (6 entries with the default --val-fraction 0.1; "
                              f"{10 * MIN_RELIABLE_ENTRIES} or more make early stopping reliable)")
    if len(val_idx) < MIN_RELIABLE_ENTRIES:
        warnings.warn(SmallDataWarning(
            f"the validation part holds {len(val_idx)} entries (fewer than {MIN_RELIABLE_ENTRIES}): early stopping "
            "and the best epoch rest on them; use more data or a larger --val-fraction"), stacklevel=2)
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
                        fingerprint, train_weights)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    run.update(strategy=strategy_label(strategy), replicas=int(strategy.num_replicas_in_sync),
               wall_time_s=round(time.perf_counter() - start, 3))
    test_pred, test_std = _predict_split(net, sets, targets, splits, run)
    metrics = run_metrics(table, targets, task_type, splits, predict_sets(net, sets.subset(val_idx)), test_pred,
                          {**(extra_metrics or {})}, run, training, fingerprint)
    test_ids = [table.ids[i] for i in test_idx]
    if out_dir is not None:
        write_outputs(out_dir, net, metrics, test_ids, targets[test_idx], test_pred, save_model, test_std)
        metrics["plots"] = write_run_plots(out_dir, metrics, targets[test_idx], test_pred,
                                           **target_label(table, task_type))  # after the results: a side output
        write_json_atomic(Path(out_dir) / METRICS_FILE, metrics)
        # The run is complete: its resume state must not leak into a later run in the same folder.
        shutil.rmtree(Path(out_dir) / STATE_DIR, ignore_errors=True)
    return FitResult(net, metrics, test_ids, test_pred, test_std)


def _predict_split(net, sets, targets: np.ndarray, splits, run: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The test predictions of a trained model (and, for an ensemble, their std). An ensemble's ``std_scale``
    is fitted on the validation set first; the uncertainty scores go into ``run``."""
    _, val_idx, test_idx = splits
    if not isinstance(net, Ensemble):
        return predict_sets(net, sets.subset(test_idx)), None
    net.std_scale = 1.0
    val_pred, val_std = predict_sets(net, sets.subset(val_idx), with_std=True)
    test_pred, test_std = predict_sets(net, sets.subset(test_idx), with_std=True)
    scale = fit_std_scale(targets[val_idx], val_pred, val_std)
    if len(val_idx) < MIN_RELIABLE_ENTRIES:
        warnings.warn(SmallDataWarning(
            f"the ensemble's std rescale factor ({scale:.3g}) was fitted on {len(val_idx)} validation points (fewer "
            f"than {MIN_RELIABLE_ENTRIES}): read its std as rough; use more data or a larger --val-fraction"),
            stacklevel=2)
    run["std_scale"] = scale
    run["uncertainty"] = {
        "val_raw": uncertainty_scores(targets[val_idx], val_pred, val_std),
        "test_raw": uncertainty_scores(targets[test_idx], test_pred, test_std),
        "test": uncertainty_scores(targets[test_idx], test_pred, test_std * scale),
    }
    net.std_scale = scale
    return test_pred, test_std * scale


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


