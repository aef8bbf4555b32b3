"""Retraining a pretrained model on new data, in the transfer modes of the CGAT paper.

:func:`retrain` takes a MEGNet (megnet ``.hdf5``, ``.keras`` or preset), a CGAT
(``.ckpt`` or ``.keras``) or an AtomSets ``.keras`` model and trains it on a data set from scratch, head only,
or in full (see :class:`~atomsets_tf.training.transfer.TransferMode`). It runs
under any ``tf.distribute`` strategy and writes what :func:`~atomsets_tf.workflows.fit.fit`
writes, plus the mode and parent in ``metrics.json``.

The head of a MEGNet is the MLP after its readout (``readout_*``) and the
target scaler; the head of a CGAT is its ReZero residual output network (the
paper's "only regression head"); the head of an AtomSets model is the MLP
after its readout and its output layer. A regression parent retrained on a 0/1
target keeps its head (and below) but gets a fresh output layer with a
sigmoid, trained with binary cross-entropy (a CGAT classifier retrained on a
regression target likewise gets a fresh value and log-std output).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from atomsets_tf.data.inputs import DataLike
from atomsets_tf.data.splits import make_splits
from atomsets_tf.data.targets import positive_stats
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.atomsets.features import model_sets
from atomsets_tf.models.atomsets.model import AtomSets
from atomsets_tf.models.cgat.family import CGATValue
from atomsets_tf.models.cgat.model import CGAT
from atomsets_tf.models.loading import load_model
from atomsets_tf.models.megnet.model import MEGNet
from atomsets_tf.models.registry import family, family_of
from atomsets_tf.training.runs import content_hash, run_fingerprint, run_folder, run_settings
from atomsets_tf.training.trainer import TrainingConfig, require_point_loss
from atomsets_tf.training.transfer import TransferMode, apply_mode, backbone_variable_paths, make_optimizer
from atomsets_tf.workflows.fit import (
    FitResult,
    ensemble_of,
    load_targets,
    member_weights,
    read_back,
    run_training,
)


def _optimizer(model, is_head, mode: TransferMode, config: TrainingConfig, backbone_lr_factor: float):
    if mode is TransferMode.FULL and backbone_lr_factor != 1.0:
        return make_optimizer(config.optimizer, config.learning_rate, config.weight_decay,
                              backbone_variable_paths(model, is_head), backbone_lr_factor)
    return None


def _megnet_setup(parent, table, targets, train_idx, task_type, mode, config, factor):
    require_point_loss(config, "a MEGNet")
    megnet = family("megnet")
    is_megnet_head = megnet.is_head
    sets = megnet.sets(parent, table, stream_above=config.stream_above)
    mean, std = float(np.mean(targets[train_idx])), float(np.std(targets[train_idx])) or 1.0
    holder = {}

    def make():
        km = keras.models.clone_model(parent.keras_model)  # inside the strategy's scope
        if mode is not TransferMode.SCRATCH:
            km.set_weights(parent.keras_model.get_weights())
        if task_type == "regression":
            scaler = km.get_layer("target_scaler")
            scaler.mean, scaler.std, scaler.is_intensive = mean, std, True
        else:
            # A new output for a new kind of target: a sigmoid on the final MLP's last hidden layer.
            hidden = [name for name in km.output if name.startswith("readout_")][-1]
            logit = keras.layers.Dense(1, name="classifier", dtype="float32")(km.output[hidden])
            probability = keras.layers.Activation("sigmoid", name="classifier_sigmoid", dtype="float32")(logit)
            km = keras.Model(km.input, {**km.output, "raw_output": logit, "prediction": probability}, name=km.name)
        km = apply_mode(km, TransferMode.FULL if mode is TransferMode.SCRATCH else mode, is_megnet_head)
        holder["megnet"] = MEGNet(km, parent.cutoff, source=f"retrained from {parent.source}",
                                  metadata={**parent.metadata, "retrained_mode": mode.value, "task_type": task_type})
        net = keras.Model(km.input, km.output["prediction"], name="megnet_prediction")
        return net, _optimizer(km, is_megnet_head, mode, config, factor)

    return sets, make, lambda _net, path: holder["megnet"].save(path)


def _cgat_setup(parent, table, targets, train_idx, task_type, mode, config, factor):
    if config.mixed_precision:  # its layers mix float32 weights with the policy's compute dtype
        raise AtomSetsError(f"CGAT does not train under mixed precision ({config.mixed_precision}) yet; "
                            "leave --mixed-precision out")
    sets = family("cgat").sets(parent, table, stream_above=config.stream_above)
    holder = {}
    with_log_std = task_type == "regression" and config.loss == "robust_l1"  # classification: always BCE
    same_task = parent.task_type == task_type
    model_config = {**parent.get_config(), "task_type": task_type}
    if not same_task:
        model_config.update(target_mean=0.0, target_std=1.0)

    def make():
        cgat = CGAT.from_config(model_config)  # inside the strategy's scope
        if mode is not TransferMode.SCRATCH and same_task:
            cgat.set_weights(parent.get_weights())
        elif mode is not TransferMode.SCRATCH:
            # A new output for a new kind of target: the parent's head is kept, its output layer is fresh.
            cgat.copy_weights_below_output(parent)
        cgat.set_element_embedding(parent.element_embedding())  # the inputs it looks up, also from scratch
        if task_type == "regression":
            cgat.fit_normalisation(targets[train_idx])
        cgat.freeze_graph_embedding(mode is TransferMode.HEAD)
        holder["cgat"] = cgat
        optimizer = None
        if mode is TransferMode.FULL and factor != 1.0:
            head = {v.path for v in cgat.head.trainable_weights}
            optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay,
                                       [v.path for v in cgat.trainable_weights if v.path not in head], factor)
        return CGATValue(cgat, with_log_std, name="cgat_value"), optimizer

    return sets, make, lambda _net, path: holder["cgat"].save(path)


def _atomsets_setup(parent, table, targets, train_idx, task_type, mode, config, factor):
    require_point_loss(config, "an AtomSets model")
    is_atomsets_head = family("atomsets").is_head
    sets = model_sets(parent, table, stream_above=config.stream_above)
    model_config = parent.get_config()
    same_task = model_config["task_type"] == task_type
    model_config.update(task_type=task_type, name=f"{parent.name}_retrained")
    if task_type == "regression":
        train_targets = targets[train_idx]
        model_config.update(target_mean=float(np.mean(train_targets)), target_std=float(np.std(train_targets)) or 1.0)
        if model_config.get("output") == "zero-inflated" and (train_targets > 0).sum() > 1:
            positive_mean, positive_std = positive_stats(train_targets)
            model_config.update(positive_mean=positive_mean, positive_std=positive_std)
    else:
        model_config.update(output="linear")

    def make():
        model = AtomSets.from_config(model_config)
        if mode is not TransferMode.SCRATCH:
            for layer in model.layers:
                if layer.name == "output" and not same_task:
                    continue  # a new target kind gets a new output layer
                try:
                    source_layer = parent.get_layer(layer.name)
                except ValueError:
                    continue
                if [w.shape for w in source_layer.get_weights()] == [w.shape for w in layer.get_weights()]:
                    layer.set_weights(source_layer.get_weights())
        model = apply_mode(model, TransferMode.FULL if mode is TransferMode.SCRATCH else mode, is_atomsets_head)
        return model, _optimizer(model, is_atomsets_head, mode, config, factor)

    return sets, make, None


def retrain(
    model,
    data: DataLike,
    mode: TransferMode | str = TransferMode.FULL,
    task_type: str | None = None,
    protocol: str = "paper",
    fold: int = 0,
    training: TrainingConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    strategy=None,
    backbone_lr_factor: float = 1.0,
    val_fraction: float = 0.1,
    split_file: str | os.PathLike | None = None,
    restart: bool = False,
    ensemble: int = 1,
    bootstrap: bool = False,
) -> FitResult:
    """Retrain a pretrained ``model`` on ``data`` in a transfer ``mode``.

    Args:
        model: a MEGNet checkpoint (``.hdf5``), a CGAT Lightning checkpoint
            (``.ckpt``), a ``.keras`` MEGNet, CGAT or AtomSets model, a preset
            name, or such a model already loaded.
        data: a data file, a matbench task name, a table, or data in memory with targets (a pandas
            ``DataFrame``, ...: anything :func:`~atomsets_tf.data.inputs.as_table` reads).
        mode: ``scratch``, ``head`` or ``full``.
        task_type: inferred from the targets when ``None``.
        protocol, fold: the split (see :func:`~atomsets_tf.workflows.fit.make_splits`).
        training: optimisation settings.
        out_dir: where to write ``model.keras``, ``metrics.json``, ... (an
            interrupted run resumes; a run with other settings is refused).
        progress: print a line every few epochs.
        strategy: a ``tf.distribute`` strategy.
        backbone_lr_factor: in ``full`` mode, the pretrained part's learning
            rate relative to the head's.
        val_fraction, split_file: see :func:`~atomsets_tf.workflows.fit.make_splits`.
        restart: discard the run already in ``out_dir`` and start afresh.
        ensemble: K > 1 retrains K copies of an AtomSets parent as one
            :class:`~atomsets_tf.models.ensemble.Ensemble` (see :func:`~atomsets_tf.workflows.fit.fit`). From
            the same parent in ``head`` or ``full`` mode the members differ only where they start afresh (a
            new output), so give them ``bootstrap`` samples. MEGNet and CGAT parents are refused for now.
        bootstrap: each member retrains on its own bootstrap sample of the training part.

    Raises:
        RunSettingsError: ``out_dir`` holds a run with other settings (and not ``restart``).
        RunLockedError: another process is writing to ``out_dir``.
    """
    mode = TransferMode.parse(mode)
    training = training or TrainingConfig()
    if not 0.0 <= backbone_lr_factor <= 1.0:
        raise AtomSetsError(f"backbone_lr_factor must be in [0, 1], got {backbone_lr_factor}")
    table, targets, task_type = load_targets(data, task_type)
    parent = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    kind = family_of(parent).name
    setups = {"megnet": _megnet_setup, "atomsets": _atomsets_setup, "cgat": _cgat_setup}
    if kind not in setups:
        raise AtomSetsError(f"retraining a {kind.upper()} model is not supported yet (MEGNet and AtomSets are)")
    check_ensemble(kind, ensemble)
    if ensemble > 1 and backbone_lr_factor != 1.0:
        raise AtomSetsError("an ensemble retrains with one learning rate: leave backbone_lr_factor at 1")
    splits = make_splits(table, protocol, fold, training.seed, val_fraction, split_file)
    label = parent_label(model, parent)
    settings = run_settings(retrain_model_settings(kind, label, mode, backbone_lr_factor, ensemble, bootstrap), table,
                            task_type, splits, protocol, fold, val_fraction, split_file, training)
    weights = member_weights(ensemble, bootstrap, len(splits[0]), training.seed)  # refused before the folder
    with run_folder(out_dir, run_fingerprint(settings), restart, strategy) as folder:
        finished = read_back(out_dir)
        if finished is not None:
            return finished
        sets, make, save = setups[kind](parent, table, targets, splits[0], task_type, mode, training,
                                        backbone_lr_factor)
        extra = {"model": kind, "parent": label, "mode": mode.value, "backbone_lr_factor": backbone_lr_factor,
                 "protocol": protocol, "fold": fold, "ensemble": int(ensemble)}
        if ensemble > 1:
            make = ensemble_of(lambda _k, make=make: make(), ensemble, training.seed, "retrained_ensemble")
        return run_training(table, sets, targets, task_type, splits, make, training, folder, progress, strategy,
                            extra, save, settings, train_weights=weights)


def check_ensemble(kind: str, ensemble: int) -> None:
    """Refuse an ensemble retrain of a family that cannot be one yet."""
    if ensemble > 1 and kind != "atomsets":
        raise AtomSetsError(f"retraining a {kind.upper()} parent as an ensemble is not supported yet "
                            "(AtomSets parents are)")


def parent_label(model, parent) -> str:
    """How a run names its parent: the path or preset given, the loaded model's source, or (a model built in
    memory) its kind and a hash of its configuration."""
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    source = getattr(parent, "source", None)
    if source:
        return str(source)
    config = {k: v for k, v in parent.get_config().items() if k not in ("name", "trainable", "dtype")}
    return f"{family_of(parent).name} built in memory (configuration {content_hash(config)})"


def retrain_model_settings(kind: str, parent: str, mode: TransferMode | str, backbone_lr_factor: float = 1.0,
                           ensemble: int = 1, bootstrap: bool = False) -> dict:
    """What :func:`retrain` trains, as :func:`~atomsets_tf.training.runs.run_settings` records it (an ensemble
    or bootstrap at its default is left out: runs recorded before keep their fingerprint)."""
    settings = {"model": kind, "parent": parent, "mode": TransferMode.parse(mode).value,
                "backbone_lr_factor": float(backbone_lr_factor)}
    if ensemble > 1:
        settings["ensemble"] = int(ensemble)
    if bootstrap:
        settings["bootstrap"] = True
    return settings
