"""Deterministic synthetic structure sets for scale benchmarks (10^3 .. 10^6 structures).

Structure ``k`` of a set is made on demand from one parent structure of
``shared/`` (the 636 jdft2d structures, or the 3447 Castelli perovskites), so a
million structures never sit in memory and structure ``k`` is always the same:

* the parent is ``k mod n_parents`` (in the parent file's order), so every
  parent is used once before any is used twice;
* the lattice is scaled isotropically by a factor in ``[0.97, 1.03]`` (fractional
  coordinates kept), a "strained copy";
* with probability 1/2 one element of the parent that :data:`SUBSTITUTIONS`
  lists is replaced, on every site it holds, by its chemically similar partner
  (Mo -> W, S -> Se, Sr -> Ba...), an "element-substituted copy".

The strain and the substitution come from ``numpy.random.SeedSequence([seed, k])``
(its hash of the entropy is specified and stable across NumPy versions; no
``Generator`` method is used). Targets are the parent's target, unchanged: these
are timing sets, not physics. Ids are ``syn-<source>-<k>`` with ``k`` zero-padded
to 6 digits (more for sets over 10^6): ``syn-jdft2d-000123``.

Usage from another benchmark script::

    from benchmarks.synthetic import SyntheticSet
    data = SyntheticSet("jdft2d", 10**5)
    for entry_id, structure, target in data.entries(0, 1000):
        ...
    data.table(0, 1000)          # an atomsets_tf.data.io.Table of a slice
    data.write_json("syn.json.gz")  # matbench layout, streamed (any size)

Command line (writes a matbench-layout file that ``atomsets-tf fit`` reads)::

    python benchmarks/synthetic.py jdft2d 10000 -o runs/syn-jdft2d-10k.json.gz
    python benchmarks/synthetic.py perovskites 1000000 --describe 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.checkout, run or imported
from benchmarks.checkout import use_checkout_shared  # noqa: E402

use_checkout_shared()  # the development folder: $ATOMSETS_TF_SHARED, else the checkout's ../shared

from atomsets_tf.data.io import Table, load, resolve_task  # noqa: E402
from atomsets_tf.data.records import WrappingBuilder  # noqa: E402
from atomsets_tf.errors import DataFormatError  # noqa: E402
from atomsets_tf.utils.io import atomic_path, shared_dir  # noqa: E402

#: The parent sets: name -> how to find the file (a matbench task name, or a path under shared/).
SOURCES: dict[str, str] = {
    "jdft2d": "task:matbench_jdft2d",
    "perovskites": "shared:data/structures/matbench_perovskites_val_subset.json.gz",
}
#: The set sizes the scale benchmarks use.
SIZES = (10**3, 10**4, 10**5, 10**6)
#: Range of the isotropic lattice scale factor of a strained copy.
STRAIN_RANGE = (0.97, 1.03)
#: Element -> its chemically similar substitute (same group, or a neighbour of similar radius).
#: Every element here and every partner is inside MEGNet's embedding (Z <= 94).
SUBSTITUTIONS: dict[str, str] = {
    "Li": "Na", "Na": "K", "K": "Rb", "Rb": "K", "Cs": "Rb",
    "Be": "Mg", "Mg": "Ca", "Ca": "Sr", "Sr": "Ba", "Ba": "Sr",
    "Sc": "Y", "Y": "Sc", "La": "Y",
    "Ti": "Zr", "Zr": "Hf", "Hf": "Zr",
    "V": "Nb", "Nb": "Ta", "Ta": "Nb",
    "Cr": "Mo", "Mo": "W", "W": "Mo",
    "Mn": "Re", "Re": "Mn", "Fe": "Ru", "Ru": "Os", "Os": "Ru",
    "Co": "Rh", "Rh": "Ir", "Ir": "Rh", "Ni": "Pd", "Pd": "Pt", "Pt": "Pd",
    "Cu": "Ag", "Ag": "Au", "Au": "Ag", "Zn": "Cd", "Cd": "Zn", "Hg": "Cd",
    "B": "Al", "Al": "Ga", "Ga": "In", "In": "Ga", "Tl": "In",
    "Si": "Ge", "Ge": "Sn", "Sn": "Ge", "Pb": "Sn",
    "N": "P", "P": "As", "As": "Sb", "Sb": "As", "Bi": "Sb",
    "O": "S", "S": "Se", "Se": "Te", "Te": "Se",
    "F": "Cl", "Cl": "Br", "Br": "I", "I": "Br",
}
_MIN_ID_DIGITS = 6


@dataclass(frozen=True)
class Recipe:
    """How structure ``k`` is made from its parent.

    Attributes:
        index: ``k``.
        parent: the parent's position in its file.
        parent_id: the parent's id.
        strain: the lattice scale factor.
        substitution: ``(old, new)`` element symbols, or ``None``.
    """

    index: int
    parent: int
    parent_id: str
    strain: float
    substitution: tuple[str, str] | None


@dataclass(frozen=True)
class _Parent:
    """A parent structure in compact form: species symbols, fractional coordinates, lattice, target."""

    entry_id: str
    species: tuple[str, ...]
    frac_coords: np.ndarray
    lattice: np.ndarray
    target: float


def _source_path(source: str) -> Path:
    """The file of a parent set (see :data:`SOURCES`)."""
    if source not in SOURCES:
        raise DataFormatError(f"unknown synthetic source {source!r}; choose one of {', '.join(SOURCES)}")
    kind, where = SOURCES[source].split(":", 1)
    if kind == "task":
        return resolve_task(where)
    shared = shared_dir()
    if shared is None:
        raise DataFormatError(f"shared/ not found (set ATOMSETS_TF_SHARED): synthetic source {source!r} needs {where}")
    return shared / where


@cache
def _parents(source: str) -> tuple[tuple[_Parent, ...], str]:
    """The parents of ``source`` (read once per process) and the target's name."""
    table = load(_source_path(source))
    if table.kind != "structure":
        raise DataFormatError(f"{table.source}: synthetic sets need structures, the file holds compositions")
    targets = table.require_targets()
    parents = tuple(
        _Parent(
            entry_id=table.ids[i],
            species=tuple(site.specie.symbol for site in s),
            frac_coords=np.array(s.frac_coords, dtype=np.float64),
            lattice=np.array(s.lattice.matrix, dtype=np.float64),
            target=float(targets[i]),
        )
        for i, s in enumerate(table.inputs)
    )
    return parents, table.target_name


class SyntheticSet:
    """``n`` synthetic structures made on demand from the parents of ``source``.

    Args:
        source: ``"jdft2d"`` or ``"perovskites"`` (see :data:`SOURCES`).
        n: number of structures (any positive size; :data:`SIZES` are the benchmark's).
        seed: changes every strain and substitution (``0`` is the benchmark's set).

    Raises:
        DataFormatError: an unknown source, a parent file that is missing, or ``n < 1``.

    Example:

    >>> data = SyntheticSet("jdft2d", 1000)
    >>> data.id(123), len(data)
    ('syn-jdft2d-000123', 1000)
    >>> data[123] == SyntheticSet("jdft2d", 10**6)[123]
    True
    """

    def __init__(self, source: str, n: int, seed: int = 0):
        if int(n) < 1:
            raise DataFormatError(f"a synthetic set needs at least one structure, got n={n}")
        self.source = source
        self.n = int(n)
        self.seed = int(seed)
        self._parents, self.target_name = _parents(source)
        self._digits = max(_MIN_ID_DIGITS, len(str(self.n - 1)))

    def __len__(self) -> int:
        return self.n

    def _check(self, k: int) -> int:
        k = int(k)
        if not 0 <= k < self.n:
            raise IndexError(f"structure {k} of a synthetic set of {self.n}")
        return k

    def id(self, k: int) -> str:
        """The id of structure ``k``: ``syn-<source>-<k>``."""
        return f"syn-{self.source}-{self._check(k):0{self._digits}d}"

    def recipe(self, k: int) -> Recipe:
        """The parent, strain and substitution of structure ``k``."""
        k = self._check(k)
        parent_index = k % len(self._parents)
        parent = self._parents[parent_index]
        strain_bits, swap_bits = np.random.SeedSequence([self.seed, k]).generate_state(2, np.uint32)
        low, high = STRAIN_RANGE
        strain = low + (high - low) * float(strain_bits) / 2.0**32
        candidates = sorted(set(parent.species) & SUBSTITUTIONS.keys())
        substitution = None
        if candidates and int(swap_bits) & 1:
            old = candidates[(int(swap_bits) >> 1) % len(candidates)]
            substitution = (old, SUBSTITUTIONS[old])
        return Recipe(k, parent_index, parent.entry_id, strain, substitution)

    def target(self, k: int) -> float:
        """The target of structure ``k`` (its parent's)."""
        return self._parents[self._check(k) % len(self._parents)].target

    def __getitem__(self, k: int):
        """Structure ``k``, a pymatgen ``Structure``."""
        from pymatgen.core import Lattice, Structure  # deferred: pymatgen is slow to import

        recipe = self.recipe(k)
        parent = self._parents[recipe.parent]
        species = list(parent.species)
        if recipe.substitution is not None:
            old, new = recipe.substitution
            species = [new if s == old else s for s in species]
        return Structure(Lattice(parent.lattice * recipe.strain), species, parent.frac_coords)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, object, float]]:
        """``(id, structure, target)`` for ``k`` in ``[start, stop)`` (default: to the end), one at a time."""
        stop = self.n if stop is None else min(int(stop), self.n)
        for k in range(int(start), stop):
            yield self.id(k), self[k], self.target(k)

    def ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The ids of ``[start, stop)``."""
        stop = self.n if stop is None else min(int(stop), self.n)
        return [self.id(k) for k in range(int(start), stop)]

    def table(self, start: int = 0, stop: int | None = None) -> Table:
        """A :class:`~atomsets_tf.data.io.Table` of ``[start, stop)`` (keep slices small: it holds them all)."""
        ids, inputs, targets = [], [], []
        for entry_id, structure, target in self.entries(start, stop):
            ids.append(entry_id)
            inputs.append(structure)
            targets.append(target)
        source = f"synthetic {self.source} n={self.n} seed={self.seed} [{start}:{stop if stop is not None else self.n}]"
        return Table(ids, inputs, np.asarray(targets, dtype=np.float64), "structure", self.target_name, source)

    def write_json(self, path: str | Path, start: int = 0, stop: int | None = None) -> Path:
        """Write ``[start, stop)`` as a matbench-layout ``.json`` / ``.json.gz``, one structure at a time.

        Returns:
            The path written (atomically: a killed run leaves no partial file).
        """
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with atomic_path(path) as tmp, opener(tmp, "wt") as fh:
            fh.write('{"columns": ["structure", ' + json.dumps(self.target_name) + '], "index": ')
            fh.write(json.dumps(self.ids(start, stop)))
            fh.write(', "data": [')
            for i, (_entry_id, structure, target) in enumerate(self.entries(start, stop)):
                fh.write((", " if i else "") + json.dumps([structure.as_dict(), target]))
            fh.write("]}\n")
        return path


@dataclass(frozen=True)
class SyntheticEntries(WrappingBuilder):
    """A record builder that makes structure ``k`` of a synthetic set itself (in ``prepare``'s worker process) and
    hands it to ``inner``: the entries passed to the workers are integers, as a reader in the workers would take
    offsets. This module imports no TensorFlow, so the workers start light."""

    data: SyntheticSet | None = None

    def __call__(self, k: int, entry_id: str) -> dict:
        return self.inner(self.data[k], entry_id)


def main(argv: list[str] | None = None) -> int:
    """Command line: write a synthetic set as a matbench-layout file, or describe its first recipes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("n", type=int, help="number of structures (e.g. 1000, 10000, 100000, 1000000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="write a matbench-layout .json or .json.gz here")
    parser.add_argument("--describe", type=int, default=0, metavar="K", help="print the recipes of the first K")
    args = parser.parse_args(argv)
    try:
        data = SyntheticSet(args.source, args.n, args.seed)
    except DataFormatError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    for k in range(min(args.describe, len(data))):
        r = data.recipe(k)
        swap = f"{r.substitution[0]}->{r.substitution[1]}" if r.substitution else "-"
        print(f"{data.id(k)}  parent {r.parent_id}  strain {r.strain:.4f}  substitution {swap}  {data[k].formula}")
    if args.output:
        print(f"wrote {data.write_json(args.output)} ({len(data)} structures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
