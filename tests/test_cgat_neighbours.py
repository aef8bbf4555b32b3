"""CGAT neighbour lists: the canonical order (distance shell, then neighbour index, then periodic image).

The order must not depend on the order in which pymatgen enumerates neighbours (which is what made
the graphs, and the predictions, depend on the pymatgen release): it is checked against a slow
reference built from ``get_all_neighbors`` with the same key, under shuffling of the raw neighbour
arrays and under float noise far below the 1e-8 Å shell tolerance.
"""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from atomsets_tf.errors import DataFormatError, TooFewNeighboursError
from atomsets_tf.models.cgat.data import structure_to_graph, structures_to_graphs
from atomsets_tf.models.cgat.elements import ElementEmbedding
from atomsets_tf.models.cgat.neighbours import (
    SHELL_TOL,
    canonical_neighbour_pairs,
    canonical_neighbours,
    neighbour_lists,
)
from atomsets_tf.utils.io import shared_dir

SHARED = shared_dir()


@pytest.fixture(scope="module")
def embedding() -> ElementEmbedding:
    symbols = ["Na", "Cl", "Si", "O", "Cu", "Fe", "Mn"]
    return ElementEmbedding(symbols, np.random.default_rng(0).normal(size=(len(symbols), 200)), name="test")


def toy_structures() -> dict[str, Structure]:
    from tests._tables import cgat_toy_crystals

    # coordinates outside [0, 1): the image is relative to the stored coordinates
    shifted = Structure(Lattice.cubic(3.0), ["Cu", "Cu"], [[0, 0, 0], [1.5, 0.5, -0.5]])
    return {**cgat_toy_crystals(), "shifted": shifted}


def matbench_structures(path: str, n: int) -> dict[str, Structure]:
    raw = json.loads(gzip.open(SHARED / path).read())
    return {i: Structure.from_dict(row[0]) for i, row in zip(raw["index"][:n], raw["data"][:n], strict=True)}


def reference_neighbours(structure: Structure, radius: float = 18.0,
                         max_neighbors: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: pymatgen's ``get_all_neighbors`` (Neighbor objects), CGAT's sequential rank rule on
    the distances, then per site a Python sort by (shell, index, image)."""
    idx, rank = [], []
    for nbrs in structure.get_all_neighbors(radius):
        by_dist = sorted(nbrs, key=lambda nb: (nb.nn_distance, nb.index, tuple(nb.image)))
        keyed, shell, start = [], 1, by_dist[0].nn_distance
        for nb in by_dist:
            if nb.nn_distance > start + SHELL_TOL:
                shell, start = shell + 1, nb.nn_distance
            keyed.append((shell, nb.index, tuple(int(x) for x in nb.image)))
        kept = sorted(keyed)[:max_neighbors]
        idx.append([k[1] for k in kept])
        rank.append([k[0] for k in kept])
    return np.array(idx), np.array(rank)


# ----------------------------------------------------------------------------- against the reference


def test_matches_reference_on_toy_crystals():
    for name, s in toy_structures().items():
        idx, rank = neighbour_lists(s, structure_id=name)
        ref_idx, ref_rank = reference_neighbours(s)
        assert np.array_equal(rank, ref_rank), name
        assert np.array_equal(idx, ref_idx), name
        assert idx.dtype == rank.dtype == np.int32


@pytest.mark.skipif(SHARED is None, reason="shared data not available")
def test_matches_reference_on_matbench():
    """jdft2d (2D, many cut shells) and perovskites (cubic, large equidistant shells)."""
    structures = matbench_structures("data/matbench/matbench_jdft2d.json.gz", 12)
    structures |= matbench_structures("data/structures/matbench_perovskites_val_subset.json.gz", 6)
    for sid, s in structures.items():
        idx, rank = neighbour_lists(s, structure_id=sid)
        ref_idx, ref_rank = reference_neighbours(s)
        assert np.array_equal(rank, ref_rank), sid
        assert np.array_equal(idx, ref_idx), sid


# ----------------------------------------------------------------------------- independent of enumeration


def test_independent_of_enumeration_order_and_float_noise():
    """Shuffling pymatgen's raw arrays, or noise of 1e-12 Å on the distances, changes nothing."""
    rng = np.random.default_rng(0)
    structures = toy_structures()
    if SHARED is not None:
        structures |= matbench_structures("data/matbench/matbench_jdft2d.json.gz", 6)
    for name, s in structures.items():
        raw = s.get_neighbor_list(18.0)
        expected = canonical_neighbours(*raw, len(s))
        for _ in range(3):
            perm = rng.permutation(len(raw[0]))
            shuffled = [a[perm] for a in raw]
            got = canonical_neighbours(*shuffled, len(s))
            assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)), name
            shuffled[3] = shuffled[3] + rng.uniform(-1e-12, 1e-12, len(perm))
            noisy = canonical_neighbours(*shuffled, len(s))
            assert all(np.array_equal(a, b) for a, b in zip(noisy, expected, strict=True)), name


def test_ties_broken_by_index_then_image():
    """Simple cubic (a = 1 Å) as a 2x1x1 cell: site 1 sits at x = 1. Site 0 sees 6 neighbours at 1 Å
    (site 1 twice, its own images four times) and 12 at sqrt(2) Å (its own images 4 times, site 1's
    8 times). With 12 slots the second shell is cut after 6: the 4 of index 0, then the 2 of index 1
    with the lowest images."""
    s = Structure(Lattice.orthorhombic(2.0, 1.0, 1.0), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0, 0]])
    raw = s.get_neighbor_list(3.0)
    pairs, rank = canonical_neighbour_pairs(*raw, len(s), max_neighbors=12)
    centre, nbr, images, dist = raw
    assert np.array_equal(rank[0], [1] * 6 + [2] * 6)
    assert np.array_equal(nbr[pairs[0]], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    assert np.allclose(dist[pairs[0]], [1.0] * 6 + [np.sqrt(2)] * 6)
    # site 1 at x = 1 is reached as image x = 0 (x = +1) or image x = -1 (x = -1): lexicographic order
    assert images[pairs[0, 10:]].tolist() == [[-1, -1, 0], [-1, 0, -1]]
    # within the first shell too, same index sorted by image
    assert images[pairs[0, :4]].tolist() == [[0, -1, 0], [0, 0, -1], [0, 0, 1], [0, 1, 0]]
    assert np.all(centre[pairs] == np.arange(2)[:, None])


def test_rocksalt_cut_shell_takes_lowest_indices():
    """Rock salt (8-site cell): 6 Cl, 12 Na, then 8 Cl at sqrt(3)·a/2 of which only 6 fit."""
    nacl = toy_structures()["nacl"]
    raw = nacl.get_neighbor_list(18.0)
    idx, rank = canonical_neighbours(*raw, len(nacl))
    centre, nbr, _, dist = raw
    for site in range(len(nacl)):
        assert np.array_equal(rank[site], [1] * 6 + [2] * 12 + [3] * 6)
        third = np.sort(nbr[(centre == site) & np.isclose(dist, 5.64 * np.sqrt(3) / 2)])
        assert len(third) == 8
        assert np.array_equal(idx[site, 18:], third[:6])


def test_wide_shell_uses_the_sequential_rank_rule():
    """Distances 1, 1+0.6e-8, 1+1.2e-8, 1+1.8e-8: each gap is below 1e-8 but the rank rule measures from
    the shell's first distance, so 1+1.2e-8 starts shell 2. Within a shell, lower index first."""
    dist = np.array([1 + 1.8e-8, 1 + 1.2e-8, 1 + 0.6e-8, 1.0, 2.0, 2.0])
    nbr = np.array([0, 3, 1, 2, 4, 0])
    centre = np.zeros(6, dtype=np.int64)
    images = np.zeros((6, 3))
    idx, rank = canonical_neighbours(centre, nbr, images, dist, 1, max_neighbors=5)
    assert rank[0].tolist() == [1, 1, 2, 2, 3]
    assert idx[0].tolist() == [1, 2, 0, 3, 0]


# ----------------------------------------------------------------------------- self-images and errors


def test_one_atom_cell_has_its_own_images():
    """fcc Cu, one site: every neighbour is a periodic image of the site itself (never the site)."""
    cu = toy_structures()["cu"]
    raw = cu.get_neighbor_list(18.0)
    pairs, rank = canonical_neighbour_pairs(*raw, 1)
    assert np.array_equal(raw[1][pairs], np.zeros((1, 24)))
    assert np.array_equal(rank[0], [1] * 12 + [2] * 6 + [3] * 6)
    assert np.all(raw[3][pairs] > 1.0) and np.all(np.any(raw[2][pairs] != 0, axis=-1))
    assert len(raw[0]) == len(cu.get_all_neighbors(18.0)[0])  # the same pairs as the old path


def test_too_few_neighbours_names_structure_and_site(embedding):
    # site 0 and 1 are 0.5 Å apart; site 2 has nothing within 1 Å
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Na"], [[0, 0, 0], [0.1, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(TooFewNeighboursError, match=r"^lone: site 2 has 0 neighbours within 1.0 Å, CGAT needs 1$"):
        structure_to_graph(s, embedding, radius=1.0, max_neighbors=1, structure_id="lone")
    with pytest.raises(TooFewNeighboursError, match=r"^Na2Cl: site 0 has 1 neighbours within 1.0 Å, CGAT needs 2$"):
        structure_to_graph(s, embedding, radius=1.0, max_neighbors=2)
    with pytest.raises(TooFewNeighboursError, match="^id-7: site 0 has 6 neighbours within 3.0"):
        structures_to_graphs([toy_structures()["nacl"]], embedding, radius=3.0, ids=["id-7"])


def test_disordered_site_names_the_id(embedding):
    s = Structure(Lattice.cubic(3.0), ["Fe", {"Fe": 0.5, "Mn": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(DataFormatError, match="^alloy-1: site 1 is disordered"):
        structures_to_graphs([toy_structures()["cu"], s], embedding, ids=["cu-0", "alloy-1"])
    with pytest.raises(DataFormatError, match=f"^{re.escape(s.composition.reduced_formula)}: site 1 is disordered"):
        structure_to_graph(s, embedding)  # no id: the formula


def test_graphs_carry_the_ids_given(embedding):
    """The memo must not hand out a graph named by an earlier call's id."""
    cu = toy_structures()["cu"]
    first = structures_to_graphs([cu], embedding)[0]
    named = structures_to_graphs([cu], embedding, ids=["cu-a"])[0]
    renamed = structures_to_graphs([cu], embedding, ids=["cu-b"])[0]
    assert (first.structure_id, named.structure_id, renamed.structure_id) == (None, "cu-a", "cu-b")
    assert np.array_equal(first.nbr_idx, renamed.nbr_idx)
    with pytest.raises(DataFormatError, match="2 ids for 1 structures"):
        structures_to_graphs([cu], embedding, ids=["a", "b"])


def test_coincident_duplicate_is_no_neighbour():
    """As in the old path (``get_all_neighbors``): a copy of a site at the same place is no neighbour,
    an atom of another element at the same place is one (at distance 0, rank 1)."""
    dup = Structure(Lattice.cubic(2.0), ["Cu", "Cu"], [[0, 0, 0], [0, 0, 0]])
    mixed = Structure(Lattice.cubic(2.0), ["Cu", "Fe"], [[0, 0, 0], [0, 0, 0]])
    for s in (dup, mixed):
        idx, rank = neighbour_lists(s, 5.0)
        ref_idx, ref_rank = reference_neighbours(s, 5.0)
        assert np.array_equal(idx, ref_idx) and np.array_equal(rank, ref_rank)
    assert neighbour_lists(dup, 5.0)[1][0, :13].tolist() == [1] * 12 + [2]  # 2 x 6 at 2 Å, none at 0
    idx, rank = neighbour_lists(mixed, 5.0)
    assert idx[:, 0].tolist() == [1, 0] and rank[0, :2].tolist() == [1, 2]
