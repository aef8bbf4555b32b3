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

from atomsets_tf.data.inputs import DataLike
from atomsets_tf.data.splits import make_splits
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.loading import load_model
from atomsets_tf.models.registry import families, family, family_of
from atomsets_tf.training.runs import content_hash, run_fingerprint, run_folder, run_settings
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.training.transfer import TransferMode, make_optimizer
from atomsets_tf.workflows.fit import (
    FitResult,
    ensemble_of,
    load_targets,
    member_weights,
    read_back,
    run_training,
)


def transfer_setup(parent, table, targets, train_idx, task_type, mode: TransferMode, config: TrainingConfig,
                   factor: float):
    """The examples and the ``make_model`` of :func:`run_training` that retrain ``parent`` in ``mode``, through its
    family's :meth:`~atomsets_tf.models.base.ModelFamily.transfer_copy`; and the function that saves the result."""
    owner = family_of(parent)
    owner.check_training(config)
    sets = owner.examples(parent, table, stream_above=config.stream_above)
    holder = {}

    def make():
        copy = owner.transfer_copy(parent, task_type, targets[train_idx], mode.value,
                                   with_log_std=config.loss == "robust_l1")  # inside the strategy's scope
        net, head = copy.net, {id(layer) for layer in copy.head}
        if copy.set_trainable is not None:
            copy.set_trainable(mode.value)
        else:
            for layer in net.layers:
                layer.trainable = mode is not TransferMode.HEAD or id(layer) in head
        holder["save"] = copy.save
        optimizer = None
        if mode is TransferMode.FULL and factor != 1.0:
            head_paths = {v.path for layer in copy.head for v in layer.trainable_weights}
            optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay,
                                       [v.path for v in net.trainable_weights if v.path not in head_paths], factor)
        return net, optimizer

    return sets, make, lambda net, path: (holder["save"] or (lambda n, p: n.save(p)))(net, path)


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
        ensemble: K > 1 retrains K copies of an AtomSets or MEGNet parent as one
            :class:`~atomsets_tf.models.ensemble.Ensemble` (see :func:`~atomsets_tf.workflows.fit.fit`). From
            the same parent in ``head`` or ``full`` mode the members differ only where they start afresh (a
            new output), so give them ``bootstrap`` samples. CGAT parents are refused for now.
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
        sets, make, save = transfer_setup(parent, table, targets, splits[0], task_type, mode, training,
                                          backbone_lr_factor)
        extra = {"model": kind, "parent": label, "mode": mode.value, "backbone_lr_factor": backbone_lr_factor,
                 "protocol": protocol, "fold": fold, "ensemble": int(ensemble)}
        if ensemble > 1:
            make = ensemble_of(lambda _k, make=make: make(), ensemble, training.seed, "retrained_ensemble")
        return run_training(table, sets, targets, task_type, splits, make, training, folder, progress, strategy,
                            extra, save, settings, train_weights=weights)


def check_ensemble(kind: str, ensemble: int) -> None:
    """Refuse an ensemble retrain of a family whose retrained models cannot be ensemble members yet."""
    if ensemble > 1 and not family(kind).retrains_as_ensemble:
        able = [f.name for f in families() if f.retrains_as_ensemble]
        raise AtomSetsError(f"retraining a {kind.upper()} parent as an ensemble is not supported yet "
                            f"({', '.join(able)} parents are)")


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
