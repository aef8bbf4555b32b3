"""Structures read from data files: parsing, the load-time physical checks, and parsing inside prepare's workers.

This module imports neither TensorFlow nor :mod:`atomsets_tf.data.prepared_writer`: ``atomsets-tf prepare --workers N``
sends the structures of a data file to its worker processes as the raw dicts the file holds, and
:class:`ParsedStructures` parses and checks each one there (:func:`structure_from_dict`,
:func:`check_site_distances`), so that reading a large file is spread over the workers too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from atomsets_tf.data.records import WrappingBuilder
from atomsets_tf.errors import DataFormatError

#: Smallest distance (Å) allowed between two sites of a structure read from a data file.
#:
#: The shortest real bond, H2's, is 0.74 Å. Two sites closer than this are an atom written twice
#: or a broken file (pymatgen's CIF reader refuses them, its JSON and POSCAR readers do not);
#: graph models would silently turn them into zero-length bonds.
MIN_SITE_DISTANCE = 0.5
#: Sites closer than this (Å) share one position: partly occupied species there form one disordered site.
SAME_POSITION = 0.01
#: Occupancies may sum to 1 plus this (rounding in a file's numbers).
OCCUPANCY_TOLERANCE = 1e-6


def structure_from_dict(value: dict, entry_id: str, source: str):
    """The pymatgen ``Structure`` of ``value`` (``Structure.as_dict()``).

    Raises:
        DataFormatError: not a structure dict, naming the file and the entry.
    """
    from pymatgen.core import Structure  # pymatgen is slow to import: only for structure data

    try:
        return Structure.from_dict(value)
    except Exception as exc:  # pymatgen raises many kinds
        raise DataFormatError(f"{source}: entry {entry_id}: not a pymatgen structure dict ({exc})") from None


def merge_shared_positions(structure):
    """``structure`` with its partly occupied sites that share a position (within :data:`SAME_POSITION` Å) merged
    into one disordered site, as a CIF reader does with ``Fe 0.5`` and ``Ni 0.5`` on one site: a JSON file or a
    ``Structure`` may list them as two sites, which are then no overlap but one site of ``Fe0.5 Ni0.5``.

    Sites whose occupancies at one position sum to more than 1 are left as they are (an atom written twice, which
    :func:`check_site_distances` refuses). An ordered structure is returned as it is. Every table of structures
    (:func:`~atomsets_tf.data.io.checked_table`) and :class:`ParsedStructures` call it once per structure.
    """
    if structure.is_ordered:
        return structure
    centres, neighbours, _, _ = structure.get_neighbor_list(SAME_POSITION)
    partial = [site.species.num_atoms < 1 - OCCUPANCY_TOLERANCE for site in structure]
    first = list(range(len(structure)))  # each site's group: the lowest index at its position
    for i, j in sorted(zip(centres.tolist(), neighbours.tolist())):
        if i != j and partial[i] and partial[j]:
            root, other = sorted((_group(first, i), _group(first, j)))
            first[other] = root
    groups: dict[int, list[int]] = {}
    for i in range(len(structure)):
        groups.setdefault(_group(first, i), []).append(i)
    merged = [g for g in groups.values()
              if len(g) > 1 and sum(structure[i].species.num_atoms for i in g) <= 1 + OCCUPANCY_TOLERANCE]
    if not merged:
        return structure
    from pymatgen.core import Structure  # pymatgen is slow to import: already loaded here (a structure exists)

    result = Structure.from_sites(list(structure))  # a mutable copy (an IStructure has no replace)
    for group in merged:
        species = sum((structure[i].species for i in group[1:]), structure[group[0]].species)
        result.replace(group[0], species, coords=structure[group[0]].frac_coords,
                       properties=structure[group[0]].properties)
    result.remove_sites([i for group in merged for i in group[1:]])
    return result


def _group(first: list[int], i: int) -> int:
    """The group of site ``i`` (union-find with path halving)."""
    while first[i] != i:
        first[i] = first[first[i]]
        i = first[i]
    return i


def check_site_distances(structure, entry: str, min_distance: float = MIN_SITE_DISTANCE) -> None:
    """Refuse a structure with two sites (or a site and its own periodic image) closer than ``min_distance`` Å.

    Uses pymatgen's compiled neighbour search within ``min_distance``, so it costs little even for
    large cells.

    Raises:
        DataFormatError: naming ``entry``, the two sites and their distance.
    """
    centres, neighbours, _, distances = structure.get_neighbor_list(min_distance)
    close = np.flatnonzero(distances < min_distance)
    if not close.size:
        return
    k = close[np.argmin(distances[close])]
    i, j, d = int(centres[k]), int(neighbours[k]), float(distances[k])
    if i == j:
        where = f"site {i} ({structure[i].species_string}) is {d:.3f} Å from its own periodic image"
        hint = "a cell too small"
    else:
        i, j = min(i, j), max(i, j)
        where = (f"sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) "
                 f"are {d:.3f} Å apart")
        hint = "an atom written twice"
    raise DataFormatError(f"{entry}: {where}, closer than the minimum {min_distance} Å ({hint}?)")


@dataclass(frozen=True)
class ParsedStructures(WrappingBuilder):
    """A record builder for raw structure dicts: parses, merges (:func:`merge_shared_positions`) and checks each
    (as loading a data file does), then hands the structure to ``inner``. A dict that is no structure, or whose sites are too close, fails its entry.

    Args:
        inner: the record builder of structures (picklable, TensorFlow-free).
        source: the data file, for messages.
    """

    source: str = ""

    def __call__(self, entry: dict, entry_id: str) -> dict[str, np.ndarray]:
        structure = merge_shared_positions(structure_from_dict(entry, entry_id, self.source))
        check_site_distances(structure, f"{self.source}: entry {entry_id}")
        return self.inner(structure, entry_id)


def input_label(value) -> str:
    """How an output names an entry's input: a composition as given (a formula string, or a pymatgen
    ``Composition`` by its formula), a structure (or a ``Structure.as_dict()``) by its reduced formula."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _dict_formula(value)
    composition = getattr(value, "composition", None)
    if composition is not None:
        return composition.reduced_formula
    formula = getattr(value, "formula", None)
    return str(formula).replace(" ", "") if formula is not None else str(value)


def _dict_formula(entry: dict) -> str:
    """The reduced formula of a structure dict, read from its sites (no ``Structure`` is built); ``""`` for a
    dict that is none (its entry fails elsewhere, with the reason)."""
    from pymatgen.core import Composition  # pymatgen is slow to import: only for structure data

    amounts: Counter = Counter()
    try:
        for site in entry["sites"]:
            for species in site["species"]:
                amounts[str(species["element"])] += float(species.get("occu", 1.0))
        return Composition(amounts).reduced_formula
    except Exception:  # noqa: BLE001  (a malformed dict, or one of pymatgen's many errors: the entry fails elsewhere)
        return ""
