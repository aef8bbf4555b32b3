"""The one AtomSets builder: what :func:`~atomsets_tf.workflows.fit.fit` and the scikit-learn estimator
(:mod:`~atomsets_tf.ext.sklearn`) build, and the element tables and features it reads.

:func:`featurize` turns a table into the weighted sets a zoo model trains on (and its fixed element table);
:func:`build_model` builds the untrained :class:`~atomsets_tf.models.AtomSets` for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from atomsets_tf.data.elements import ElementTable
from atomsets_tf.data.io import Table
from atomsets_tf.data.pipeline import WeightedSets
from atomsets_tf.data.targets import positive_stats
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.atomsets import STRUCTURAL_MODELS, ZOO_ROWS
from atomsets_tf.models.atomsets.element_sources import check_element_features, element_features_table, v0_sources
from atomsets_tf.models.atomsets.features import composition_sets, structural_sets
from atomsets_tf.models.atomsets.model import AtomSets
from atomsets_tf.models.megnet.model import load_megnet
from atomsets_tf.models.registry import DEFAULT_SOURCE


@dataclass
class ModelConfig:
    """Hyperparameters of an AtomSets head (Table S2 of the paper)."""

    n_layers_before_readout: int = 2
    n_layers_after_readout: int = 2
    units: int = 64
    readout: str | list[str] = "mean"
    activation: str = "relu"
    embedding_dim: int = 32
    #: The regression output (:data:`~atomsets_tf.data.targets.OUTPUT_KINDS`); ``None`` = what a Matbench task's
    #: target calls for (:func:`~atomsets_tf.data.targets.task_output_kind`), ``linear`` for other data.
    output: str | None = None
    #: Members of an ensemble (1 = a single model); see :func:`fit`.
    ensemble: int = 1
    #: Whether each ensemble member trains on its own bootstrap sample of the training part.
    bootstrap: bool = False

    def architecture(self) -> dict:
        """The fields that shape one network (what runs recorded before the output and ensemble fields hold)."""
        return {k: v for k, v in asdict(self).items() if k not in ("output", "ensemble", "bootstrap")}


_ATOMSETS_FIT = tuple(row.name for row in ZOO_ROWS if row.fit)


def element_table_of(model: str, features_from: str | None = None,
                     element_features: list[str] | None = None) -> ElementTable | None:
    """The fixed element table ``model`` looks its elements up in: ``atomsets-v0``'s V0 (the default, the
    ``element_features`` sources, or the embedding layer of ``features_from``); ``None`` for other models.
    Read once per process for the same arguments (featurising and building both ask for it)."""
    if model != "atomsets-v0":
        return None
    sources = v0_sources(model, features_from, element_features)
    return _v0_table(None if sources is not None else features_from, None if sources is None else tuple(sources))


@lru_cache(maxsize=8)
def _v0_table(features_from, sources: tuple[str, ...] | None) -> ElementTable:
    """The V0 table of ``sources`` concatenated, or else the embedding layer of the MEGNet ``features_from``."""
    if sources is not None:
        return element_features_table(list(sources))
    rows = load_megnet(features_from).embedding_table()
    known = np.ones(len(rows), dtype=bool)
    known[0] = False
    return ElementTable(rows, known, name=f"{features_from} embedding")


def featurize(
    table: Table,
    model: str,
    features_from: str | None = None,
    progress: bool = False,
    element_features: list[str] | None = None,
) -> tuple[WeightedSets, ElementTable | None]:
    """A table's entries (in memory) as the weighted sets ``model`` trains on, and its fixed element table (if any).

    Compositional models (``atomsets``, ``atomsets-v0``) see compositions
    (structures are reduced to theirs); ``atomsets-v0`` looks its elements up in
    its V0 table: by default the embedding layer of the paper's parent, the
    formation-energy MEGNet (embedded in the package); the embedding layer of
    ``features_from`` (a MEGNet checkpoint or preset); or, given
    ``element_features``, those sources concatenated per element
    (:func:`~atomsets_tf.models.atomsets.element_sources.element_features_table`).
    Structural models (see :data:`~atomsets_tf.models.atomsets.STRUCTURAL_MODELS`)
    see features tapped from ``features_from`` (default: the paper's parent model).

    Raises:
        AtomSetsError: an unknown model, ``element_features`` for another model than ``atomsets-v0``, together
            with ``features_from``, or naming an unknown source.
        UnknownElementError: an element the V0 table has no row for, naming the entry.
    """
    if model not in _ATOMSETS_FIT:
        raise AtomSetsError(f"unknown AtomSets model {model!r}; choose one of {', '.join(_ATOMSETS_FIT)}")
    check_element_features(model, features_from, element_features)
    if model in STRUCTURAL_MODELS:
        return structural_sets(model, features_from or DEFAULT_SOURCE, table, progress), None
    element_table = element_table_of(model, features_from, element_features)
    return composition_sets(table, element_table), element_table


def build_model(
    model: str,
    task_type: str,
    train_targets: np.ndarray,
    element_table=None,
    config: ModelConfig | None = None,
    sets: WeightedSets | None = None,
    features_from: str | None = None,
    output: str = "linear",
    name: str | None = None,
):
    """An untrained :class:`~atomsets_tf.models.AtomSets` for ``model``, standardised on ``train_targets``.

    Structural models need ``sets`` (for the feature width); MLP models are
    AtomSets heads on a set of one element with no layer before the readout.
    ``output`` is the regression output (:data:`~atomsets_tf.data.targets.OUTPUT_KINDS`); a two-part output
    takes the statistics of the positive ``train_targets``.
    """
    hyper = asdict(config or ModelConfig())
    feature_dim = n_before = source = None
    if model in STRUCTURAL_MODELS:
        tap, use = STRUCTURAL_MODELS[model]
        feature_dim = int(sets.tensor_spec()["features"].shape[-1])
        n_before = 0 if use != "atom" else None
        source = {"model": model, "source": str(features_from or DEFAULT_SOURCE), "tap": tap}
    mean, std = 0.0, 1.0
    if task_type == "regression":
        mean = float(np.mean(train_targets))
        std = float(np.std(train_targets)) or 1.0
    positive_mean, positive_std = positive_stats(train_targets)
    return AtomSets(
        output=output if task_type == "regression" else "linear",
        positive_mean=positive_mean,
        positive_std=positive_std,
        feature_dim=feature_dim,
        feature_source=source,
        element_table=None if element_table is None else element_table.table,
        known_elements=None if element_table is None else np.flatnonzero(element_table.known).tolist(),
        trainable_embedding=model != "atomsets-v0",
        embedding_dim=hyper["embedding_dim"],
        n_layers_before_readout=hyper["n_layers_before_readout"] if n_before is None else n_before,
        n_layers_after_readout=hyper["n_layers_after_readout"],
        units=hyper["units"],
        readout=hyper["readout"] if n_before is None else "mean",
        activation=hyper["activation"],
        task_type=task_type,
        target_mean=mean,
        target_std=std,
        name=name or model.replace("-", "_"),
    )
