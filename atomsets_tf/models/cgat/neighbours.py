"""CGAT's neighbour geometry: every site's nearest neighbours and their distance-shell ranks, in a canonical
order.

What CGAT's own ``prepare_data.py`` builds, reproduced:

* every site's neighbours within ``radius`` (18 Å; periodic images included, the site itself not)
  are put in order and the first ``max_neighbors`` (24) kept. A site may be its own neighbour
  (periodic image) and an index may repeat;
* the edge feature is the integer *distance-shell rank*: 1 for the nearest distance, +1 each time
  the distance grows by more than ``SHELL_TOL`` = 1e-8 Å over the first distance of the current
  shell (values 1..24).

Neighbour order (canonical, :func:`canonical_neighbours`). The original sorts pymatgen's
``get_all_neighbors`` list by distance with a stable sort, so among neighbours at the same distance
the order in which that pymatgen release enumerates them decides which fill the 24 slots when the
last shell is cut; that order is no part of pymatgen's API and can change between releases. Here
the order is a function of the structure alone:

1. by distance shell (the shells of the rank rule above, so float noise far below 1e-8 Å, e.g.
   1e-12 between pymatgen versions, cannot reorder two neighbours of one shell);
2. within a shell, by neighbour site index;
3. then by periodic image, lexicographically on the integer lattice vector ``n`` for which the
   neighbour sits at ``frac_coords[index] + n`` (the site's stored coordinates, not wrapped).

The ranks are the original's; only the choice among the neighbours of a cut last shell (and the
slot order inside a shell) can differ from a given pymatgen release's. Neighbours come from
pymatgen's compiled ``Structure.get_neighbor_list`` and are ordered with NumPy sorts over all sites
at once.

The original silently drops a structure in which a site has fewer than 24 neighbours within the
radius; here that raises :class:`~atomsets_tf.errors.TooFewNeighboursError` (a subclass of
``IsolatedAtomError``) naming the structure and site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from atomsets_tf.errors import TooFewNeighboursError

#: CGAT's rank rule: a distance more than this (Å) above the first distance of its shell starts a new shell.
SHELL_TOL = 1e-8
#: Candidates for a site's nearest: its neighbours up to its K-th distance plus this (Å, >> SHELL_TOL).
CANDIDATE_MARGIN = 1e-6
#: pymatgen's ``numerical_tol``: pairs closer than this (Å) are coincident sites.
ZERO_DISTANCE = 1e-8

#: pymatgen's ``Site.position_atol`` (Å): two sites closer than this in every coordinate are equal.
SITE_POSITION_ATOL = 1e-5


def describe_structure(structure: Any, structure_id: str | None) -> str:
    """How messages name a structure: its id when given, else its reduced formula."""
    if structure_id is not None:
        return structure_id
    return structure.composition.reduced_formula if len(structure) else "structure"


def _shells_exact(dist: np.ndarray) -> np.ndarray:
    """CGAT's rank rule applied sequentially to ascending ``dist``: the shell (from 0) of each distance."""
    shells = np.zeros(len(dist), dtype=np.int64)
    shell, start = 0, float(dist[0])
    for i, d in enumerate(dist.tolist()):
        if d > start + SHELL_TOL:
            shell, start = shell + 1, d
        shells[i] = shell
    return shells


def _nearest_exact(nbr: np.ndarray, images: np.ndarray, dist: np.ndarray,
                   max_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """The canonical nearest ``max_neighbors`` of one site, from all its pairs in any order: positions
    in the given arrays and ranks.

    The slow path of :func:`canonical_neighbour_pairs`, for a site whose distances chain into a shell
    wider than ``SHELL_TOL`` (there grouping by gaps and the sequential rank rule could differ).
    """
    by_dist = np.lexsort((images[:, 2], images[:, 1], images[:, 0], nbr, dist))
    im = images[by_dist]
    shells = _shells_exact(dist[by_dist])
    order = np.lexsort((im[:, 2], im[:, 1], im[:, 0], nbr[by_dist], shells))[:max_neighbors]
    return by_dist[order], shells[order] + 1


def _kth_distance(centre: np.ndarray, dist: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th smallest distance of each site (``counts``: pairs per site, each >= ``k``)."""
    if not np.all(centre[1:] >= centre[:-1]):  # pymatgen lists the pairs by centre; anything else is sorted
        by_centre = np.argsort(centre, kind="stable")
        centre, dist = centre[by_centre], dist[by_centre]
    width = int(counts.max())
    row_offset = np.arange(0, len(counts) * width, width) - (np.cumsum(counts) - counts)
    table = np.full(len(counts) * width, np.inf)
    table[np.arange(len(centre)) + row_offset[centre]] = dist
    return np.partition(table.reshape(len(counts), width), k - 1, axis=1)[:, k - 1]


def canonical_neighbours(centre: np.ndarray, nbr: np.ndarray, images: np.ndarray, dist: np.ndarray,
                         n_sites: int, max_neighbors: int = 24, label: str | Callable[[], str] = "structure",
                         radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``max_neighbors`` nearest neighbours of every site in the canonical order (module docstring).

    Arguments as :func:`canonical_neighbour_pairs`.

    Returns:
        ``(nbr_idx, nbr_rank)``, both int32 ``[n_sites, max_neighbors]``.

    Raises:
        TooFewNeighboursError: a site with fewer than ``max_neighbors`` neighbours.
    """
    pairs, rank = canonical_neighbour_pairs(centre, nbr, images, dist, n_sites, max_neighbors, label, radius)
    return np.asarray(nbr)[pairs].astype(np.int32), rank


def canonical_neighbour_pairs(centre: np.ndarray, nbr: np.ndarray, images: np.ndarray, dist: np.ndarray,
                              n_sites: int, max_neighbors: int = 24, label: str | Callable[[], str] = "structure",
                              radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs that fill each site's ``max_neighbors`` slots, in the canonical order (module docstring).

    Args:
        centre, nbr, images, dist: one row per (site, neighbour) pair, in any order: the centre site,
            the neighbour site, its integer lattice image ``[P, 3]`` and the distance (the arrays of
            pymatgen's ``Structure.get_neighbor_list``).
        n_sites: number of sites.
        max_neighbors: neighbours kept per site.
        label, radius: for the error message (``label``: the structure's name, or a function giving it).

    Returns:
        ``(pairs, nbr_rank)``: int64 positions in the given arrays and int32 ranks, both
        ``[n_sites, max_neighbors]``.

    Raises:
        TooFewNeighboursError: a site with fewer than ``max_neighbors`` neighbours.
    """
    if n_sites == 0:
        return np.zeros((0, max_neighbors), np.int64), np.zeros((0, max_neighbors), np.int32)
    counts = np.bincount(centre, minlength=n_sites)
    if counts.min() < max_neighbors:
        site = int(np.argmax(counts < max_neighbors))
        within = "" if radius is None else f" within {radius} Å"
        name = label() if callable(label) else label
        raise TooFewNeighboursError(f"{name}: site {site} has {counts[site]} neighbours{within}, "
                                    f"CGAT needs {max_neighbors}")
    # 1. candidates: each site's neighbours up to its K-th distance + CANDIDATE_MARGIN, so that the sorts
    #    below see few pairs (K-th distance of each site by np.partition of a [site, neighbour] table)
    kth = _kth_distance(centre, dist, counts, max_neighbors)
    keep = np.nonzero(dist <= kth[centre] + CANDIDATE_MARGIN)[0]
    # 2. distance shells of the candidates: a new shell where the distance grows by more than SHELL_TOL
    by_dist = keep[np.lexsort((dist[keep], centre[keep]))]
    c, d = centre[by_dist], dist[by_dist]
    new_shell = np.ones(len(c), dtype=bool)
    new_shell[1:] = (c[1:] != c[:-1]) | (d[1:] > d[:-1] + SHELL_TOL)
    shell = np.cumsum(new_shell)
    # 3. within a shell: by neighbour index, then image; the first K of each site
    im = images[by_dist]
    order = np.lexsort((im[:, 2], im[:, 1], im[:, 0], nbr[by_dist], shell))
    n_cand = np.bincount(c, minlength=n_sites)
    chosen = order[(np.cumsum(n_cand) - n_cand)[:, None] + np.arange(max_neighbors)]
    pairs = by_dist[chosen]
    shell_of = shell[chosen]
    nbr_rank = (shell_of - shell_of[:, :1] + 1).astype(np.int32)
    # 4. a shell wider than SHELL_TOL (distances chained by small steps): the sequential rule for its site
    wide = d > d[np.nonzero(new_shell)[0]][shell - 1] + SHELL_TOL
    for site in np.unique(c[wide]).tolist() if wide.any() else ():
        mine = np.flatnonzero(centre == site)
        at, nbr_rank[site] = _nearest_exact(nbr[mine], images[mine], dist[mine], max_neighbors)
        pairs[site] = mine[at]
    return pairs, nbr_rank


def neighbour_lists(structure: Any, radius: float = 18.0, max_neighbors: int = 24,
                    structure_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour indices and distance-shell ranks of every site, in the canonical order.

    Neighbours come from pymatgen's ``Structure.get_neighbor_list`` (compiled search; periodic images
    of the site itself included, the site itself excluded) and are ordered by
    :func:`canonical_neighbours`.

    Returns:
        ``(nbr_idx, nbr_rank)``, both int32 ``[n_sites, max_neighbors]``.

    Raises:
        TooFewNeighboursError: a site has fewer than ``max_neighbors`` neighbours within ``radius``.
    """
    centre, nbr, images, dist = structure.get_neighbor_list(radius)
    if len(dist) and dist.min() <= ZERO_DISTANCE:
        keep = _not_coincident_copies(structure, centre, nbr, dist)
        centre, nbr, images, dist = centre[keep], nbr[keep], images[keep], dist[keep]
    return canonical_neighbours(centre, nbr, images, dist, len(structure), max_neighbors,
                                lambda: describe_structure(structure, structure_id), radius)


def _not_coincident_copies(structure: Any, centre: np.ndarray, nbr: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Mask without the pairs that the old path (pymatgen's ``get_all_neighbors``) dropped besides the site
    itself: a neighbour at zero distance whose stored site equals the centre (species, coordinates and
    properties), i.e. a duplicate of the centre site."""
    keep = np.ones(len(dist), dtype=bool)
    sites = structure.sites
    for p in np.flatnonzero(dist <= ZERO_DISTANCE).tolist():
        a, b = sites[centre[p]], sites[nbr[p]]
        keep[p] = (a.species != b.species or a.properties != b.properties
                   or not np.allclose(a.coords, b.coords, atol=SITE_POSITION_ATOL))
    return keep
