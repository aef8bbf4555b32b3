"""The one model zoo: every model name the package trains, its family, and what it reads.

The command line (its ``--model`` choices), :func:`~atomsets_tf.workflows.fit.fit`,
the benchmark runners and the grid all read this table; nothing else lists model
names. It is plain data, so reading it imports no TensorFlow (``--help`` stays fast).

=====================  ==========  ===========  ====================================================
name                   family      inputs       what is trained
=====================  ==========  ===========  ====================================================
``atomsets``           atomsets    composition  AtomSets, trainable element embedding (Table 1)
``atomsets-v0``        atomsets    composition  AtomSets on MEGNet's V0 element embedding, fixed
``atomsets-v1..v3``    atomsets    structure    AtomSets heads on MEGNet V1..V3 site features
``mlp-*``              atomsets    structure    MLPs on a MEGNet structure-level tap (f, u1..u3, v_r,
                                                V0 statistics)
``megnet``, ``cgat``   megnet/cgat structure    the family's model trained from scratch
``*-head``, ``*-full`` megnet/cgat structure    a pretrained parent retrained: head only, or in full
``atomsets-head/full`` atomsets    either       a trained AtomSets parent (``--features-from``) retrained
``dummy``              dummy       either       the training mean or majority class (Table S4)
=====================  ==========  ===========  ====================================================

A trained model belongs to a *family* (:mod:`atomsets_tf.models.base`): :func:`family`
and :func:`family_of` return the object that loads, predicts with, taps and
retrains models of that family.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from atomsets_tf.errors import AtomSetsError


@dataclass(frozen=True)
class ZooEntry:
    """One model name of the zoo.

    Attributes:
        name: what ``--model`` takes.
        family: ``"atomsets"``, ``"megnet"``, ``"cgat"`` or ``"dummy"``.
        inputs: ``"composition"``, ``"structure"`` or ``"either"``.
        tap: the parent MEGNet's tap a structural AtomSets model reads (``None`` otherwise).
        use: how the tap is used: ``"atom"`` (per-site rows), ``"vector"`` or ``"stats"``.
        mode: the transfer mode (``"scratch"``, ``"head"`` or ``"full"``) of a retrained model.
        fit: whether :func:`~atomsets_tf.workflows.fit.fit` trains it (the models of Table 1).
        grid: which Table S2 grid searches it (``"atomsets"``, ``"mlp"`` or ``None``).
    """

    name: str
    family: str
    inputs: str
    tap: str | None = None
    use: str | None = None
    mode: str = "scratch"
    fit: bool = False
    grid: str | None = None


def _structural(name: str, tap: str, use: str) -> ZooEntry:
    return ZooEntry(name, "atomsets", "structure", tap, use, fit=True, grid="atomsets" if use == "atom" else "mlp")


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("atomsets", "atomsets", "composition", fit=True, grid="atomsets"),
    ZooEntry("atomsets-v0", "atomsets", "composition", "V0", "atom", fit=True, grid="atomsets"),
    _structural("atomsets-v1", "V1", "atom"),
    _structural("atomsets-v2", "V2", "atom"),
    _structural("atomsets-v3", "V3", "atom"),
    _structural("mlp-f", "f", "vector"),
    _structural("mlp-u1", "u1", "vector"),
    _structural("mlp-u2", "u2", "vector"),
    _structural("mlp-u3", "u3", "vector"),
    _structural("mlp-v_r", "v_r", "vector"),
    _structural("mlp-v0-stats", "V0", "stats"),
    ZooEntry("megnet", "megnet", "structure"),
    ZooEntry("cgat", "cgat", "structure"),
    ZooEntry("dummy", "dummy", "either"),
    ZooEntry("megnet-head", "megnet", "structure", mode="head"),
    ZooEntry("megnet-full", "megnet", "structure", mode="full"),
    ZooEntry("cgat-head", "cgat", "structure", mode="head"),
    ZooEntry("cgat-full", "cgat", "structure", mode="full"),
    ZooEntry("atomsets-head", "atomsets", "either", mode="head"),
    ZooEntry("atomsets-full", "atomsets", "either", mode="full"),
)
_BY_NAME = {entry.name: entry for entry in ZOO}

#: Models :func:`~atomsets_tf.workflows.fit.fit` trains (Table 1 of the AtomSets paper).
FIT_MODELS: tuple[str, ...] = tuple(e.name for e in ZOO if e.fit)
#: Every model a benchmark, a learning curve or an extrapolation test can name.
BENCHMARK_MODELS: tuple[str, ...] = tuple(e.name for e in ZOO)
#: AtomSets models that read compositions.
COMPOSITIONAL_MODELS: tuple[str, ...] = tuple(e.name for e in ZOO if e.fit and e.inputs == "composition")
#: Structural AtomSets models: name -> (the parent MEGNet's tap, how it is used).
STRUCTURAL_MODELS: dict[str, tuple[str, str]] = {e.name: (e.tap, e.use) for e in ZOO
                                                 if e.fit and e.inputs == "structure"}
#: Retrained pretrained models: name -> (parent family, transfer mode).
TRANSFER_MODELS: dict[str, tuple[str, str]] = {e.name: (e.family, e.mode) for e in ZOO if e.mode != "scratch"}
#: The AtomSets paper's parent model (the MEGNet that structural models tap by default).
DEFAULT_SOURCE = "megnet-mp-2019.4.1-formation_energy"

#: The module that defines each family's :class:`~atomsets_tf.models.base.ModelFamily`; imported on
#: first use, so that reading the zoo (the command line's ``--help``) imports no TensorFlow.
FAMILY_MODULES = {
    "atomsets": "atomsets_tf.models.atomsets.family",
    "megnet": "atomsets_tf.models.megnet.family",
    "cgat": "atomsets_tf.models.cgat.family",
    "ensemble": "atomsets_tf.models.ensemble",
}


def entry(name: str) -> ZooEntry:
    """The zoo entry of ``name``.

    Raises:
        AtomSetsError: not a model of the zoo (the message lists them).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise AtomSetsError(f"unknown model {name!r}; choose one of {', '.join(BENCHMARK_MODELS)}") from None


def family(name: str):
    """The :class:`~atomsets_tf.models.base.ModelFamily` called ``name`` (``atomsets``, ``megnet``, ``cgat``)."""
    if name not in FAMILY_MODULES:
        raise AtomSetsError(f"unknown model family {name!r}; choose one of {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def families() -> list:
    """Every model family, in :data:`FAMILY_MODULES` order."""
    return [family(name) for name in FAMILY_MODULES]


def family_of(model):
    """The family that ``model`` (an :class:`~atomsets_tf.models.AtomSets`, a MEGNet or a CGAT) belongs to.

    Raises:
        AtomSetsError: ``model`` belongs to no family of the package.
    """
    for candidate in families():
        if candidate.owns(model):
            return candidate
    raise AtomSetsError(f"{type(model).__qualname__} is not a model of atomsets-tf (AtomSets, MEGNet or CGAT)")
