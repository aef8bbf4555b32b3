"""CGAT inputs from pymatgen structures, in the package's padded batch layout.

What CGAT's own ``prepare_data.py`` + ``data.py`` build, reproduced:

* every site's neighbours within ``radius`` (18 Å; periodic images included) are sorted by
  distance (stable sort of pymatgen's ``get_all_neighbors`` order) and the nearest
  ``max_neighbors`` (24) kept. A site may be its own neighbour (periodic image) and an index may
  repeat;
* the edge feature is the integer *distance-shell rank*: 1 for the nearest distance, +1 each time
  the distance grows by more than 1e-8 Å (values 1..24);
* node features are the 200-wide matscholar embedding of the element (float32);
* the ROOST composition graph: distinct elements in order of first appearance, weights = count /
  number of sites, all ordered pairs of distinct elements (formed densely in the model).

The original silently drops a structure in which a site has fewer than 24 neighbours within the
radius; here that raises :class:`~atomsets_tf.errors.TooFewNeighboursError` (a subclass of
``IsolatedAtomError``) naming the structure and site.

Batch layout (:func:`collate`), ``B`` crystals, ``N`` padded atoms, ``E`` padded elements, ``K`` = 24:

* ``atom_fea`` float32 ``[B, N, 200]``, ``atom_mask`` float32 ``[B, N]`` (1 = real atom);
* ``nbr_idx`` int32 ``[B, N, K]``: neighbour index, local to the crystal; ``nbr_rank`` int32
  ``[B, N, K]`` (0 on padding);
* ``elem_fea`` float32 ``[B, E, 200]``, ``elem_weights`` float32 ``[B, E]`` (0 = padding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.data.padding import pad_stack, padded_length, size_bucketed_batches
from atomsets_tf.errors import (
    DataFormatError,
    EmptyStructureError,
    TooFewNeighboursError,
    UnknownElementError,
)

#: File name of the matscholar element embedding CGAT starts from.
MATSCHOLAR_FILE = "matscholar-embedding.json"
#: Environment variable that can point at the matscholar embedding JSON.
EMBEDDING_ENV = "ATOMSETS_TF_CGAT_EMBEDDING"

#: Input names of the CGAT model, in the padded layout.
INPUT_KEYS = ("atom_fea", "atom_mask", "nbr_idx", "nbr_rank", "elem_fea", "elem_weights")


class ElementEmbedding:
    """Element symbol -> feature vector (float32), e.g. the matscholar embedding.

    Args:
        symbols: element symbols, one per row of ``table``.
        table: ``(n_elements, dim)``.
        name: where it came from, for messages.
    """

    def __init__(self, symbols: Sequence[str], table: np.ndarray, name: str = "embedding") -> None:
        self.symbols = [str(s) for s in symbols]
        self.table = np.asarray(table, dtype=np.float32)
        if self.table.ndim != 2 or len(self.symbols) != len(self.table):
            raise DataFormatError(f"{name}: need one row per symbol, got {len(self.symbols)} symbols "
                                  f"and a table of shape {self.table.shape}")
        self.name = name
        self._index = {s: i for i, s in enumerate(self.symbols)}
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A digest of the symbols and values: equal for the same embedding loaded twice."""
        if self._fingerprint is None:
            import hashlib

            digest = hashlib.sha1(" ".join(self.symbols).encode())
            digest.update(self.table.tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    def __getitem__(self, symbol: str) -> np.ndarray:
        try:
            return self.table[self._index[symbol]]
        except KeyError:
            raise UnknownElementError(f"element {symbol!r} is not in the {self.name} element embedding") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ElementEmbedding:
        """Read ``{"H": [...], ...}`` (CGAT's ``LoadFeaturiser`` format; float64 values -> float32)."""
        from atomsets_tf.data.elements import read_element_vectors

        symbols, table = read_element_vectors(path)
        return cls(symbols, table, name=Path(path).name)


#: Preset name of the matscholar embedding (files searched like every preset, see :mod:`atomsets_tf.presets`).
MATSCHOLAR_PRESET = "cgat-matscholar-embedding"




def default_embedding_path(download: bool = True) -> Path:
    """Where the matscholar embedding is: ``$ATOMSETS_TF_CGAT_EMBEDDING`` if set, else the
    ``cgat-matscholar-embedding`` preset (``$ATOMSETS_TF_MODELS``, the cache, ``shared/pretrained``,
    then, with ``download``, a download from the CGAT repository into the cache; sha256-checked).

    Raises:
        FileNotFoundError: not found (and not downloadable).
    """
    if os.environ.get(EMBEDDING_ENV):
        return Path(os.environ[EMBEDDING_ENV])
    from atomsets_tf.errors import UnknownPresetError
    from atomsets_tf.presets import resolve

    try:
        return resolve(MATSCHOLAR_PRESET, download=download)["json"]
    except UnknownPresetError as exc:
        raise FileNotFoundError(
            f"matscholar embedding not found ({exc}); set ${EMBEDDING_ENV} to a copy of {MATSCHOLAR_FILE} "
            "(github.com/hyllios/CGAT, CGAT/embeddings/)"
        ) from None


def load_matscholar_embedding(path: str | os.PathLike | None = None) -> ElementEmbedding:
    """Load the 200-wide matscholar element embedding (default location: :func:`default_embedding_path`)."""
    return ElementEmbedding.from_json(path if path is not None else default_embedding_path())


@dataclass
class CGATGraph:
    """Inputs of one crystal (unpadded).

    Attributes:
        atom_fea: ``[n, d]`` float32 element embedding of each site.
        nbr_idx: ``[n, K]`` int32 site index of each site's K nearest neighbours.
        nbr_rank: ``[n, K]`` int32 distance-shell rank 1..K.
        elem_fea: ``[e, d]`` float32 embedding of each distinct element.
        elem_weights: ``[e]`` float32 fractional abundance.
        elements: distinct element symbols (order of first appearance).
        structure_id: optional identifier, for messages.
    """

    atom_fea: np.ndarray
    nbr_idx: np.ndarray
    nbr_rank: np.ndarray
    elem_fea: np.ndarray
    elem_weights: np.ndarray
    elements: list[str] = field(default_factory=list)
    structure_id: str | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.atom_fea.shape[0])

    def roost_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The original's explicit ROOST pair lists ``(self_idx, nbr_idx)`` (all ordered pairs i != j)."""
        e = len(self.elem_weights)
        self_idx = np.repeat(np.arange(e), max(e - 1, 0))
        nbr_idx = np.array([j for i in range(e) for j in range(e) if j != i], dtype=np.int64)
        return self_idx.astype(np.int64), nbr_idx


def _site_symbols(structure: Any, sid: str) -> list[str]:
    symbols = []
    for i, site in enumerate(structure):
        if not site.is_ordered:
            raise DataFormatError(f"{sid}: site {i} is disordered ({site.species}); CGAT needs ordered sites")
        symbols.append(site.specie.symbol)
    return symbols


def neighbour_lists(structure: Any, radius: float = 18.0, max_neighbors: int = 24,
                    structure_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour indices and distance-shell ranks of every site.

    Returns:
        ``(nbr_idx, nbr_rank)``, both int32 ``[n_sites, max_neighbors]``.

    Raises:
        TooFewNeighboursError: a site has fewer than ``max_neighbors`` neighbours within ``radius``.
    """
    sid = structure_id or structure.composition.reduced_formula
    all_nbrs = structure.get_all_neighbors(radius, include_index=True)
    n = len(all_nbrs)
    idx = np.zeros((n, max_neighbors), dtype=np.int32)
    rank = np.zeros((n, max_neighbors), dtype=np.int32)
    for site, nbrs in enumerate(all_nbrs):
        if len(nbrs) < max_neighbors:
            raise TooFewNeighboursError(
                f"{sid}: site {site} has {len(nbrs)} neighbours within {radius} Å, CGAT needs {max_neighbors}"
            )
        nearest = sorted(nbrs, key=lambda nb: nb.nn_distance)[:max_neighbors]  # stable, as the original
        shell, dist = 1, nearest[0].nn_distance
        for j, nb in enumerate(nearest):
            if nb.nn_distance > dist + 1e-8:
                dist = nb.nn_distance
                shell += 1
            idx[site, j] = nb.index
            rank[site, j] = shell
    return idx, rank


def structure_to_graph(structure: Any, embedding: ElementEmbedding | None = None, radius: float = 18.0,
                       max_neighbors: int = 24, structure_id: str | None = None) -> CGATGraph:
    """Build the CGAT inputs of one pymatgen ``Structure``.

    Raises:
        EmptyStructureError: no sites.
        UnknownElementError: an element missing from the embedding.
        TooFewNeighboursError: a site with fewer than ``max_neighbors`` neighbours within ``radius``.
        DataFormatError: a disordered site.
    """
    sid = structure_id or (structure.composition.reduced_formula if len(structure) else "structure")
    if len(structure) == 0:
        raise EmptyStructureError(f"{sid}: structure has no sites")
    embedding = embedding if embedding is not None else load_matscholar_embedding()
    symbols = _site_symbols(structure, sid)
    for s in set(symbols):
        if s not in embedding:
            raise UnknownElementError(f"{sid}: element {s!r} is not in the {embedding.name} element embedding")
    atom_fea = np.stack([embedding[s] for s in symbols])
    idx, rank = neighbour_lists(structure, radius, max_neighbors, sid)
    distinct = list(dict.fromkeys(symbols))
    weights = np.array([symbols.count(s) / len(symbols) for s in distinct], dtype=np.float32)
    elem_fea = np.stack([embedding[s] for s in distinct])
    return CGATGraph(atom_fea, idx, rank, elem_fea, weights, distinct, structure_id)


#: Graphs built in this process, by (structure object, embedding values, radius, neighbours): retraining
#: the same table at several data sizes (learning curves), from a parent loaded anew each time, builds each
#: graph once. The entry holds the structure itself, so its ``id`` cannot be reused while the entry lives.
_GRAPH_CACHE: dict[tuple, tuple[Any, CGATGraph]] = {}
GRAPH_CACHE_SIZE = 200_000


def structures_to_graphs(structures: Sequence[Any], embedding: ElementEmbedding | None = None,
                         radius: float = 18.0, max_neighbors: int = 24,
                         ids: Sequence[str] | None = None) -> list[CGATGraph]:
    """:func:`structure_to_graph` for each structure (the embedding is loaded once; graphs are memoised)."""
    embedding = embedding if embedding is not None else load_matscholar_embedding()
    graphs = []
    for i, s in enumerate(structures):
        key = (id(s), embedding.fingerprint, float(radius), int(max_neighbors))
        hit = _GRAPH_CACHE.get(key)
        if hit is None or hit[0] is not s:
            if len(_GRAPH_CACHE) >= GRAPH_CACHE_SIZE:
                _GRAPH_CACHE.clear()
            hit = (s, structure_to_graph(s, embedding, radius, max_neighbors, None if ids is None else str(ids[i])))
            _GRAPH_CACHE[key] = hit
        graphs.append(hit[1])
    return graphs


def collate(graphs: Sequence[CGATGraph], atom_multiple: int = 8, elem_multiple: int = 4,
            targets: Sequence[float] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pad a list of graphs into one batch (layout in the module docstring).

    Padded lengths are rounded up to ``atom_multiple`` / ``elem_multiple`` so that few distinct
    shapes reach ``tf.function``. With ``targets``, the dict also holds ``target`` ``[B]``.
    """
    if not graphs:
        raise ValueError("collate needs at least one graph")
    n = padded_length(max(g.n_atoms for g in graphs), atom_multiple)
    e = padded_length(max(len(g.elem_weights) for g in graphs), elem_multiple)
    out = {
        "atom_fea": pad_stack([g.atom_fea for g in graphs], n, 0.0, np.float32),
        "atom_mask": pad_stack([np.ones(g.n_atoms, np.float32) for g in graphs], n, 0.0, np.float32),
        "nbr_idx": pad_stack([g.nbr_idx for g in graphs], n, 0, np.int32),
        "nbr_rank": pad_stack([g.nbr_rank for g in graphs], n, 0, np.int32),
        "elem_fea": pad_stack([g.elem_fea for g in graphs], e, 0.0, np.float32),
        "elem_weights": pad_stack([g.elem_weights for g in graphs], e, 0.0, np.float32),
    }
    if targets is not None:
        out["target"] = np.asarray(targets, dtype=np.float32).reshape(len(graphs))
    return out


def iterate_batches(graphs: Sequence[CGATGraph], batch_size: int = 32, bucket: bool = True,
                    shuffle: bool = False, seed: int | None = None,
                    targets: Sequence[float] | np.ndarray | None = None
                    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Yield ``(indices, batch)``; with ``bucket`` the batches hold crystals of similar size."""
    if bucket:
        index_batches = size_bucketed_batches([g.n_atoms for g in graphs], batch_size, shuffle=shuffle, seed=seed)
    else:
        order = np.arange(len(graphs))
        index_batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in index_batches:
        t = None if targets is None else np.asarray(targets)[idx]
        yield idx, collate([graphs[i] for i in idx], targets=t)
