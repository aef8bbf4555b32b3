"""Train and score one benchmark model on one split: the models a benchmark can name.

=====================  ====================================================================
name                   what is trained
=====================  ====================================================================
``atomsets``           AtomSets on compositions, trainable element embedding (Table 1)
``atomsets-v0``        AtomSets on compositions, MEGNet's V0 element embedding, fixed
``atomsets-v1..v3``,   AtomSets heads / MLPs on features tapped from the MEGNet parent
``mlp-*``              (see :data:`~atomsets_tf.models.atomsets.STRUCTURAL_MODELS`)
``megnet``             MEGNet with the parent's architecture, trained from scratch
``cgat``               a CPU-sized CGAT (:data:`~atomsets_tf.models.cgat.family.CGAT_BENCHMARK_CONFIG`), trained from scratch
``megnet-head``,       the MEGNet parent (``features_from``, default the paper's) retrained:
``megnet-full``        only its head, or every weight (the CGAT paper's transfer modes)
``cgat-head``,         a pretrained CGAT (``features_from``: a ``.keras`` / ``.ckpt`` file)
``cgat-full``          retrained in the same two modes
``dummy``              the training mean (regression) or majority class (classification),
                       as in Table S4 of the AtomSets paper
=====================  ====================================================================

Every runner takes the same split description (see
:func:`~atomsets_tf.workflows.fit.make_splits`) and returns a
:class:`~atomsets_tf.workflows.fit.FitResult` whose ``metrics`` hold
``val_<metric>`` and ``test_<metric>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.inputs import DataLike, as_table, is_path
from atomsets_tf.data.splits import make_splits
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.registry import BASELINES, BENCHMARK_MODELS, entry, family
from atomsets_tf.training.metrics import metric_name, score
from atomsets_tf.training.runs import run_fingerprint, run_folder, run_settings
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import FitResult, ModelConfig, fit, fit_model_settings, load_targets, resolve_output
from atomsets_tf.workflows.outputs import versions, write_outputs
from atomsets_tf.workflows.retrain import parent_label, retrain, retrain_model_settings


def benchmark_models() -> tuple[str, ...]:
    """Every model name :func:`run_model` accepts (the registry's :data:`~atomsets_tf.models.registry.BENCHMARK_MODELS`)."""
    return tuple(BENCHMARK_MODELS)


def needs_structures(model: str) -> bool:
    """Whether ``model`` trains on structures (else on compositions)."""
    return entry(model).inputs == "structure"


def load_task(data: DataLike, model: str) -> data_io.Table:
    """The table ``model`` trains on: a path or task name (compositional models prefer a task's formulas file: no
    structures to parse), a :class:`~atomsets_tf.data.io.Table`, or data in memory (see
    :func:`~atomsets_tf.data.inputs.as_table`)."""
    if is_path(data):
        return data_io.load(data, compositional=not needs_structures(model))
    return as_table(data)  # a Table, or data in memory (a DataFrame, pymatgen objects, ...)


def run_model(
    table: data_io.Table,
    model: str,
    protocol: str = "matbench",
    fold: int = 0,
    training: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    features_from: str | None = None,
    split: Mapping | str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    restart: bool = False,
    element_features: list[str] | None = None,
) -> FitResult:
    """Train ``model`` (a name of :func:`benchmark_models`) on one split of ``table`` and score it.

    ``split`` overrides ``protocol``/``fold`` with explicit ids (``{"train", "val", "test"}``).
    ``restart`` discards a run already in ``out_dir`` (else one with other settings is refused).
    ``element_features``: the V0 sources of ``atomsets-v0`` (see :func:`~atomsets_tf.workflows.fit.fit`).
    """
    training = training or TrainingConfig()
    _check_runnable(table, model)
    common = {"protocol": protocol, "fold": fold, "training": training, "out_dir": out_dir, "progress": progress,
              "val_fraction": val_fraction, "split_file": split, "restart": restart}
    if model == "dummy":
        return fit_dummy(table, protocol, fold, training.seed, out_dir, split, val_fraction, restart)
    if _retrains(model):
        config = model_config or ModelConfig()
        return retrain(_parent(model, features_from), table, mode=_retrain_mode(model), ensemble=config.ensemble,
                       bootstrap=config.bootstrap, **common)
    return fit(table, model, model_config=model_config, features_from=features_from,
               element_features=element_features, **common)


def _check_runnable(table: data_io.Table, model: str) -> None:
    entry(model)  # an unknown name is refused, listing the known ones
    if needs_structures(model) and table.kind not in ("structure", "prepared"):
        raise AtomSetsError(f"{model} needs structures, but {table.meta.get('task') or table.source or 'the data'} "
                            "holds compositions")


def _retrains(model: str) -> bool:
    """Whether ``model`` is trained by :func:`~atomsets_tf.workflows.retrain.retrain`: a transfer model, or a
    scratch one that :func:`~atomsets_tf.workflows.fit.fit` does not build (``megnet``, ``cgat``: a parent's
    architecture)."""
    row = entry(model)
    return row.mode != "scratch" or (not row.fit and row.name not in {b.name for b in BASELINES})


def _retrain_mode(model: str) -> str:
    return entry(model).mode


def _parent(model: str, features_from: str | None):
    """The parent :func:`~atomsets_tf.workflows.retrain.retrain` starts ``model`` from: what its family's
    :meth:`~atomsets_tf.models.base.ModelFamily.default_parent` says for ``features_from``."""
    row = entry(model)
    parent = family(row.family).default_parent(row, features_from)
    if parent is None:
        raise AtomSetsError(f"{model} needs a pretrained {row.family} model: pass its file as features_from "
                            "(--features-from)")
    return parent


def expected_fingerprint(
    table: data_io.Table,
    model: str,
    protocol: str = "matbench",
    fold: int = 0,
    training: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    features_from: str | None = None,
    split: Mapping | str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    element_features: list[str] | None = None,
) -> dict:
    """The fingerprint that :func:`run_model` with these arguments records, without training anything.

    What :func:`~atomsets_tf.evaluation.protocol.finished_run` compares a finished run with.
    """
    training = training or TrainingConfig()
    _check_runnable(table, model)
    table, targets, task_type = load_targets(table)
    splits = make_splits(table, protocol, fold, training.seed, val_fraction, split)
    if model == "dummy":
        trained, training = {"model": "dummy"}, None
    elif _retrains(model):
        kind = entry(model).family
        parent = _parent(model, features_from)
        config = model_config or ModelConfig()
        trained = retrain_model_settings(kind, parent_label(parent, parent), _retrain_mode(model), 1.0,
                                         config.ensemble, config.bootstrap)
    else:
        output = resolve_output(table, task_type, (model_config or ModelConfig()).output, targets[splits[0]])
        trained = fit_model_settings(model, model_config, features_from, output, element_features)
    return run_fingerprint(run_settings(trained, table, task_type, splits, protocol, fold, val_fraction, split,
                                        training))


def fit_dummy(
    table: data_io.Table,
    protocol: str = "matbench",
    fold: int = 0,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    split: Mapping | str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    restart: bool = False,
) -> FitResult:
    """The dummy model of Table S4: predict the training mean, or the training set's majority class.

    A constant score has a ROC-AUC of 0.5 whatever the class.
    """
    start = time.perf_counter()
    table, targets, task_type = load_targets(table)
    train, val, test = make_splits(table, protocol, fold, seed, val_fraction, split)
    fingerprint = run_fingerprint(run_settings({"model": "dummy"}, table, task_type, (train, val, test), protocol,
                                               fold, val_fraction, split))
    if task_type == "classification":
        constant = float(np.mean(targets[train]) >= 0.5)
    else:
        constant = float(np.mean(targets[train]))
    name = metric_name(task_type)
    predictions = np.full(len(test), constant)
    metrics = {
        "model": "dummy", "protocol": protocol, "fold": fold,
        "data": table.meta.get("task") or table.source, "task_type": task_type, "target": table.target_name,
        "n_train": int(len(train)), "n_val": int(len(val)), "n_test": int(len(test)),
        f"val_{name}": score(task_type, targets[val], np.full(len(val), constant))[name],
        f"test_{name}": score(task_type, targets[test], predictions)[name],
        "epochs_run": 0, "best_epoch": 0, "resumed_from_epoch": 0, "resumed_from_step": 0,
        "constant": constant,
        "wall_time_s": round(time.perf_counter() - start, 3), "versions": versions(), "fingerprint": fingerprint,
    }
    test_ids = [table.ids[i] for i in test]
    with run_folder(out_dir, fingerprint, restart) as folder:
        if folder is not None:
            write_outputs(folder, None, metrics, test_ids, targets[test], predictions)
    return FitResult(None, metrics, test_ids, predictions)
