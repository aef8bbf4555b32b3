"""Crystal structure -> MEGNet graph, as megnet's ``CrystalGraph`` builds it, and padded batches.

megnet 1.3.2's ``CrystalGraph`` (``StructureGraphFixedRadius``) calls pymatgen's
``find_points_in_spheres`` on the Cartesian coordinates with radius = cutoff,
full periodic boundary conditions and ``tol=1e-8``, casts the distances to
float32 and drops the self pairs (same atom, distance ``<= tol``). So:

* bonds are directed (i -> j and j -> i are both present);
* every periodic image within the cutoff is its own bond, including bonds from
  an atom to its own images (i -> i at a lattice-vector distance);
* ``index1`` (the centre atom) comes out sorted;
* the state is megnet's default ``[0, 0]``.

Edge cases, the same as megnet's where megnet defines them:

* a structure without sites raises :class:`~atomsets_tf.errors.EmptyStructureError`;
* a structure with no bond at all within the cutoff raises
  :class:`~atomsets_tf.errors.IsolatedAtomError` (megnet raises ``RuntimeError``);
* a structure where *some* atoms have no neighbour within the cutoff is kept, as
  megnet does (it only logs "Isolated atoms found"): those atoms get a bond
  aggregate of 0 in every graph block. We emit an :class:`IsolatedAtomWarning`;
* a disordered site (partial occupancy) raises :class:`~atomsets_tf.errors.DataFormatError`
  (megnet fails on it too: the graph's nodes are atomic numbers).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from atomsets_tf.data.padding import pad_stack, padded_length
from atomsets_tf.data.records import FieldSpec, RecordSchema
from atomsets_tf.errors import (
    DataFormatError,
    DisorderedSiteError,
    EmptyStructureError,
    IsolatedAtomError,
    UnknownElementError,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: Numerical tolerance megnet passes to ``find_points_in_spheres`` and uses to drop self pairs.
NUMERICAL_TOL = 1e-8


class IsolatedAtomWarning(UserWarning):
    """Some atoms of a structure have no neighbour within the cutoff (kept, as megnet does)."""


@dataclass
class MEGNetGraph:
    """One crystal graph in megnet's layout.

    Attributes:
        atoms: int32 ``(n_atoms,)`` atomic numbers, in site order.
        index1: int32 ``(n_bonds,)`` centre atom of each directed bond (sorted).
        index2: int32 ``(n_bonds,)`` neighbour atom of each bond.
        distance: float32 ``(n_bonds,)`` bond lengths in Å.
        state: float32 ``(n_state,)`` graph state (megnet's default ``[0, 0]``).
        n_isolated: number of atoms without any bond.
    """

    atoms: np.ndarray
    index1: np.ndarray
    index2: np.ndarray
    distance: np.ndarray
    state: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.float32))
    n_isolated: int = 0

    @property
    def n_atoms(self) -> int:
        return int(len(self.atoms))

    @property
    def n_bonds(self) -> int:
        return int(len(self.index1))


def _as_structure(structure: Any) -> Structure:
    """``structure`` as a pymatgen ``Structure`` (from itself or its ``as_dict()``)."""
    from pymatgen.core import Structure  # deferred: pymatgen is slow to import

    if isinstance(structure, Structure):
        return structure
    if isinstance(structure, Mapping):
        try:
            return Structure.from_dict(structure)
        except Exception as exc:  # pymatgen raises many kinds
            raise DataFormatError(f"cannot read a structure from this dict: {exc}") from exc
    raise DataFormatError(f"expected a pymatgen Structure (or its as_dict()), got {type(structure).__name__}")


def _atomic_numbers(structure: Structure, name: str, max_z: int | None) -> np.ndarray:
    """int32 atomic numbers of the sites, after checking the structure is non-empty, ordered and covered."""
    if len(structure) == 0:
        raise EmptyStructureError(f"{name} has no sites")
    if not structure.is_ordered:
        site = next(i for i, s in enumerate(structure) if not s.is_ordered)
        raise DisorderedSiteError(f"{name}: site {site} is disordered ({structure[site].species}); MEGNet's graphs "
                                  f"need one element per site")
    atoms = np.array([site.specie.Z for site in structure], dtype=np.int32)
    if max_z is not None and (atoms.max() > max_z or atoms.min() < 1):
        bad = int(atoms.max() if atoms.max() > max_z else atoms.min())
        raise UnknownElementError(f"{name} has atomic number {bad}; the model's embedding covers Z = 1..{max_z}")
    return atoms


def _bonds(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """megnet's directed bonds within ``cutoff``: ``(index1, index2, distance)``, self pairs dropped."""
    from pymatgen.optimization.neighbors import find_points_in_spheres  # deferred: pymatgen is slow to import

    lattice = np.ascontiguousarray(np.array(structure.lattice.matrix), dtype=float)
    cart = np.ascontiguousarray(np.array(structure.cart_coords), dtype=float)
    center, neighbor, _images, dist = find_points_in_spheres(
        cart, cart, r=float(cutoff), pbc=np.array([1, 1, 1], dtype=np.int64), lattice=lattice, tol=NUMERICAL_TOL
    )
    dist = dist.astype(np.float32)
    keep = (center != neighbor) | (dist > NUMERICAL_TOL)
    return center[keep].astype(np.int32), neighbor[keep].astype(np.int32), dist[keep]


def structure_to_graph(
    structure: Structure | Mapping[str, Any],
    cutoff: float,
    state: Sequence[float] | None = None,
    max_z: int | None = None,
    label: str | None = None,
) -> MEGNetGraph:
    """Build megnet's crystal graph of ``structure``.

    Args:
        structure: a pymatgen ``Structure`` (or its ``as_dict()``).
        cutoff: neighbour cutoff radius in Å (4 or 5 for the published models).
        state: the graph state; megnet's default ``[0, 0]``.
        max_z: largest atomic number the model's embedding covers (94 for megnet's
            95-row table); a larger one raises :class:`UnknownElementError`.
        label: a name for the structure in error messages.

    Returns:
        The :class:`MEGNetGraph`.

    Raises:
        EmptyStructureError, IsolatedAtomError, UnknownElementError, DataFormatError.
    """
    structure = _as_structure(structure)
    name = f"structure {label!r}" if label is not None else "structure"
    atoms = _atomic_numbers(structure, name, max_z)
    index1, index2, dist = _bonds(structure, cutoff)
    if len(index1) == 0:
        raise IsolatedAtomError(
            f"{name} has no bonds within the {cutoff:g} Å cutoff (megnet: 'The cutoff is too small, "
            "resulting in material graph with no bonds')"
        )
    n_isolated = int(len(atoms) - len(np.unique(index1)))
    if n_isolated:
        warnings.warn(
            f"{name}: {n_isolated} atom(s) have no neighbour within {cutoff:g} Å; kept with a bond aggregate of 0, "
            "as megnet does",
            IsolatedAtomWarning,
            stacklevel=2,
        )
    st = np.zeros(2, dtype=np.float32) if state is None else np.asarray(state, dtype=np.float32).reshape(-1)
    return MEGNetGraph(atoms=atoms, index1=index1, index2=index2, distance=dist, state=st, n_isolated=n_isolated)


#: The padded batch layout (:func:`batch_graphs`): input name -> (dtype, per-example shape; ``None`` is a padded
#: length, ``"state"`` the number of state features). The model's ``keras.Input`` s and the ``tf.TensorSpec`` s of
#: a training set both come from here.
INPUT_SCHEMA: dict[str, tuple[str, tuple]] = {
    "atoms": ("int32", (None,)),
    "atom_mask": ("float32", (None,)),
    "distance": ("float32", (None,)),
    "bond_mask": ("float32", (None,)),
    "index1": ("int32", (None,)),
    "index2": ("int32", (None,)),
    "state": ("float32", ("state",)),
}


def input_shapes(n_state: int) -> dict[str, tuple[str, tuple]]:
    """:data:`INPUT_SCHEMA` with the state width filled in: name -> (dtype, per-example shape)."""
    return {name: (dtype, tuple(n_state if d == "state" else d for d in shape))
            for name, (dtype, shape) in INPUT_SCHEMA.items()}


def batch_graphs(graphs: Sequence[MEGNetGraph], multiple: int = 8) -> dict[str, np.ndarray]:
    """Pad graphs into one batch of the package's layout.

    Lengths are rounded up with :func:`~atomsets_tf.data.padding.padded_length`,
    so only a few shapes occur. Padding bonds point at atom 0 and have mask 0.

    Returns:
        A dict of numpy arrays: ``atoms`` int32 ``[B, N]``, ``atom_mask`` float32
        ``[B, N]``, ``distance`` float32 ``[B, M]``, ``bond_mask`` float32 ``[B, M]``,
        ``index1`` / ``index2`` int32 ``[B, M]`` (local), ``state`` float32 ``[B, n_state]``.
    """
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph")
    n = padded_length(max(g.n_atoms for g in graphs), multiple)
    m = padded_length(max(g.n_bonds for g in graphs), multiple)
    return {
        "atoms": pad_stack([g.atoms for g in graphs], n, 0, np.int32),
        "atom_mask": pad_stack([np.ones(g.n_atoms, np.float32) for g in graphs], n, 0, np.float32),
        "distance": pad_stack([g.distance for g in graphs], m, 0, np.float32),
        "bond_mask": pad_stack([np.ones(g.n_bonds, np.float32) for g in graphs], m, 0, np.float32),
        "index1": pad_stack([g.index1 for g in graphs], m, 0, np.int32),
        "index2": pad_stack([g.index2 for g in graphs], m, 0, np.int32),
        "state": np.stack([np.asarray(g.state, np.float32) for g in graphs]),
    }


def record_schema(n_state: int = 2) -> RecordSchema:
    """How a MEGNet graph is stored in a prepared dataset (:mod:`atomsets_tf.data.prepared_format`): one record per
    structure, bond arrays along the ragged ``bonds`` axis, atomic numbers along ``atoms``; the masks and the
    padded layout of :func:`batch_graphs` are rebuilt when batches are formed."""
    return RecordSchema(
        fields={
            "atoms": FieldSpec("uint8", (), "atoms", "int32"),
            "index1": FieldSpec("int32", (), "bonds", "int32"),
            "index2": FieldSpec("int32", (), "bonds", "int32"),
            "distance": FieldSpec("float32", (), "bonds", "float32"),
            "state": FieldSpec("float32", (int(n_state),), None, "float32"),
        },
        masks={"atom_mask": "atoms", "bond_mask": "bonds"},
        multiples={"atoms": 8, "bonds": 8},
        size_group="bonds",
    )


def graph_to_record(graph: MEGNetGraph) -> dict[str, np.ndarray]:
    """The arrays of ``graph`` as a prepared-dataset record (:func:`record_schema`)."""
    return {"atoms": graph.atoms.astype(np.uint8), "index1": graph.index1, "index2": graph.index2,
            "distance": graph.distance, "state": np.asarray(graph.state, np.float32)}


def graph_from_record(record: dict[str, np.ndarray]) -> MEGNetGraph:
    """The :class:`MEGNetGraph` a record holds (the inverse of :func:`graph_to_record`)."""
    index1 = np.asarray(record["index1"], np.int32)
    atoms = np.asarray(record["atoms"], np.int32)
    return MEGNetGraph(atoms=atoms, index1=index1, index2=np.asarray(record["index2"], np.int32),
                       distance=np.asarray(record["distance"], np.float32),
                       state=np.asarray(record["state"], np.float32),
                       n_isolated=int(len(atoms) - len(np.unique(index1))))


@dataclass(frozen=True)
class GraphRecordBuilder:
    """Builds the prepared-dataset record of one structure with a MEGNet's graph settings.

    Picklable and free of TensorFlow, so that ``atomsets-tf prepare --workers N`` runs it in worker processes.

    Args:
        cutoff: the model's neighbour cutoff (Å).
        max_z: the largest atomic number its embedding covers.
        n_state: the width of the graph state (zeros, megnet's default).
    """

    cutoff: float
    max_z: int
    n_state: int = 2
    kind: str = "megnet-graph"

    @property
    def schema(self) -> RecordSchema:
        return record_schema(self.n_state)

    @property
    def settings(self) -> dict:
        """What the records depend on (compared when a prepared dataset meets a model)."""
        return {"cutoff": float(self.cutoff), "max_z": int(self.max_z), "n_state": int(self.n_state)}

    def __call__(self, entry: Any, entry_id: str) -> dict[str, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IsolatedAtomWarning)  # kept, as megnet does; not a failure
            graph = structure_to_graph(entry, self.cutoff, state=np.zeros(self.n_state), max_z=self.max_z,
                                       label=entry_id)
        return graph_to_record(graph)
