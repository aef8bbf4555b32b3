"""The one model zoo: the registered model families and every model name they declare.

A *family* is a kind of model (:class:`~atomsets_tf.models.base.ModelFamily`): AtomSets, MEGNet, CGAT, ensembles,
or one a user defines. A family registers itself (:func:`register_family`, at the end of its module), and each
declares its *zoo rows*: the names ``--model`` takes, what they read and how they are trained. The command line (its
``--model`` choices), :func:`~atomsets_tf.workflows.fit.fit`, the benchmark runners and the grid all read the zoo
through this module; nothing else lists model names.

The families that ship declare their rows in their package (``ZOO_ROWS`` in ``models/<family>/__init__.py``, plain
data), so that reading the zoo (the command line's ``--help``) imports no TensorFlow; their family modules are
imported on first use.

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
``dummy``              (baseline)  either       the training mean or majority class (Table S4)
=====================  ==========  ===========  ====================================================
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from atomsets_tf.errors import AtomSetsError


@dataclass(frozen=True)
class ZooEntry:
    """One model name of the zoo.

    Attributes:
        name: what ``--model`` takes.
        family: the name of the family that trains it (``"dummy"``: the baseline of Table S4, no family).
        inputs: ``"composition"``, ``"structure"`` or ``"either"``.
        tap: the parent MEGNet's tap a structural AtomSets model reads (``None`` otherwise).
        use: how the tap is used: ``"atom"`` (per-site rows), ``"vector"`` or ``"stats"``.
        mode: how it starts: ``"scratch"`` (built afresh), or a transfer mode (``"head"``, ``"full"``) of a
            pretrained parent.
        fit: whether :func:`~atomsets_tf.workflows.fit.fit` builds and trains it from scratch (the models of
            Table 1, and a registered family's own names); otherwise a scratch name is retrained from a parent's
            architecture (``megnet``, ``cgat``).
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


#: The families that ship: name -> (the package that declares their ``ZOO_ROWS``, or ``None``; the module that
#: defines and registers the family, imported on first use).
BUILTIN_FAMILIES: dict[str, tuple[str | None, str]] = {
    "atomsets": ("atomsets_tf.models.atomsets", "atomsets_tf.models.atomsets.family"),
    "megnet": ("atomsets_tf.models.megnet", "atomsets_tf.models.megnet.family"),
    "cgat": ("atomsets_tf.models.cgat", "atomsets_tf.models.cgat.family"),
    "ensemble": (None, "atomsets_tf.models.ensemble"),
}
#: The baseline of Table S4, trained by no family: the training mean or majority class.
BASELINES: tuple[ZooEntry, ...] = (ZooEntry("dummy", "dummy", "either"),)
#: The AtomSets paper's parent model (the MEGNet that structural models tap by default).
DEFAULT_SOURCE = "megnet-mp-2019.4.1-formation_energy"

#: The entry-point group through which an installed package adds a family: each entry point names a module
#: that registers its family when imported (``[project.entry-points."atomsets_tf.families"]``).
PLUGIN_GROUP = "atomsets_tf.families"

_REGISTERED: dict[str, object] = {}  # family name -> its ModelFamily, as registered
_BUILTIN_ROWS: list[ZooEntry] = []  # read once from the built-in packages
_PLUGINS_LOADED: list[bool] = []


def _load_plugins() -> None:
    """Import the modules of the :data:`PLUGIN_GROUP` entry points, once (each registers its family)."""
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED.append(True)
    for point in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            point.load()
        except Exception as exc:  # a broken plugin must not break the package: say which one, go on
            warnings.warn(f"the model family plugin {point.name!r} ({point.value}) failed to load: {exc}",
                          stacklevel=2)


def register_family(family):
    """Register a :class:`~atomsets_tf.models.base.ModelFamily` instance and the zoo rows it declares
    (``family.zoo``); returns it (``FAMILY = register_family(MyFamily())``). Registering the same family again
    is a no-op.

    Raises:
        AtomSetsError: another family already has its name, or one of its rows names a model the zoo has.
    """
    name = family.name
    known = _REGISTERED.get(name)
    if known is family:
        return family
    if known is not None and type(known) is not type(family):
        raise AtomSetsError(f"a model family called {name!r} is registered already ({type(known).__qualname__})")
    if name not in BUILTIN_FAMILIES:
        taken = {row.name: row.family for row in zoo() if row.family != name}
        clash = [row.name for row in family.zoo if row.name in taken]
        if clash:
            raise AtomSetsError(f"family {name!r} declares model {clash[0]!r}, which the {taken[clash[0]]} family has")
    _REGISTERED[name] = family
    return family


def unregister_family(name: str) -> None:
    """Forget a family registered by :func:`register_family` (the built-in families stay)."""
    if name in BUILTIN_FAMILIES:
        raise AtomSetsError(f"{name!r} is a built-in family")
    _REGISTERED.pop(name, None)


def _builtin_rows() -> list[ZooEntry]:
    if not _BUILTIN_ROWS:
        for package, _ in BUILTIN_FAMILIES.values():
            if package is not None:
                _BUILTIN_ROWS.extend(importlib.import_module(package).ZOO_ROWS)
    return _BUILTIN_ROWS


def zoo() -> tuple[ZooEntry, ...]:
    """Every model name: the built-in families' rows, the baseline, then those of families registered since
    (by :func:`register_family`, or by an installed plugin: :data:`PLUGIN_GROUP`)."""
    _load_plugins()
    added = [row for name, fam in _REGISTERED.items() if name not in BUILTIN_FAMILIES for row in fam.zoo]
    return (*_builtin_rows(), *BASELINES, *added)


class ModelNames(Sequence):
    """The names of the zoo rows that ``keep`` accepts, read afresh on every use (so that a family registered
    later is in it): what the command line's ``--model`` choices hold."""

    def __init__(self, keep: Callable[[ZooEntry], bool]):
        self._keep = keep

    def _names(self) -> list[str]:
        return [row.name for row in zoo() if self._keep(row)]

    def __getitem__(self, index):
        return self._names()[index]

    def __iter__(self):  # one read of the zoo (Sequence's default reads it once per index)
        return iter(self._names())

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"ModelNames({self._names()!r})"


#: Models :func:`~atomsets_tf.workflows.fit.fit` builds and trains (Table 1 of the AtomSets paper, and every
#: registered family's scratch names).
FIT_MODELS = ModelNames(lambda row: row.fit)
#: Every model a benchmark, a learning curve or an extrapolation test can name.
BENCHMARK_MODELS = ModelNames(lambda row: True)


def entry(name: str) -> ZooEntry:
    """The zoo entry of ``name``.

    Raises:
        AtomSetsError: not a model of the zoo (the message lists them).
    """
    for row in zoo():
        if row.name == name:
            return row
    raise AtomSetsError(f"unknown model {name!r}; choose one of {', '.join(BENCHMARK_MODELS)}")


def family_names() -> list[str]:
    """The names of every family: the built-in ones, then those registered since (and installed plugins')."""
    _load_plugins()
    return [*BUILTIN_FAMILIES, *(name for name in _REGISTERED if name not in BUILTIN_FAMILIES)]


def family(name: str):
    """The :class:`~atomsets_tf.models.base.ModelFamily` called ``name`` (a built-in one is imported here)."""
    if name not in _REGISTERED and name in BUILTIN_FAMILIES:
        importlib.import_module(BUILTIN_FAMILIES[name][1])  # the module registers its family
    if name not in _REGISTERED:
        raise AtomSetsError(f"unknown model family {name!r}; choose one of {', '.join(family_names())}")
    return _REGISTERED[name]


def families() -> list:
    """Every model family, in :func:`family_names` order."""
    return [family(name) for name in family_names()]


def family_of(model):
    """The family that ``model`` belongs to.

    Raises:
        AtomSetsError: ``model`` belongs to no registered family.
    """
    for candidate in families():
        if candidate.owns(model):
            return candidate
    raise AtomSetsError(f"{type(model).__qualname__} is not a model of a registered family "
                        f"({', '.join(family_names())})")
