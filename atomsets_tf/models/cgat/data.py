"""CGAT inputs from pymatgen structures, in the package's padded batch layout.

What CGAT's own ``prepare_data.py`` + ``data.py`` build, reproduced:

* every site's ``max_neighbors`` (24) nearest neighbours within ``radius`` (18 Å) and their
  distance-shell ranks, in the canonical order of :mod:`atomsets_tf.models.cgat.neighbours`;
* node features are the 200-wide matscholar embedding of the element (float32). A graph stores the
  atomic numbers only; the model looks the embedding up (its stored ``element_table``, else the
  embedding it was given), so a graph is small (about 200 bytes per atom) and depends on the embedding
  only through the set of elements it covers (an element outside it is refused);
* the ROOST composition graph: distinct elements in order of first appearance, weights = count /
  number of sites, all ordered pairs of distinct elements (formed densely in the model).

Batch layout (:func:`collate`), ``B`` crystals, ``N`` padded atoms, ``E`` padded elements, ``K`` = 24:

* ``atom_z`` int32 ``[B, N]``: atomic number of each atom (0 = padding), ``atom_mask`` float32 ``[B, N]``
  (1 = real atom);
* ``nbr_idx`` int32 ``[B, N, K]``: neighbour index, local to the crystal; ``nbr_rank`` int32
  ``[B, N, K]`` (0 on padding);
* ``elem_z`` int32 ``[B, E]``: atomic number of each distinct element (0 = padding), ``elem_weights``
  float32 ``[B, E]`` (0 = padding).

The model also takes the element features themselves (``collate(..., embedding=...)``, the layout of
the original code): ``atom_fea`` float32 ``[B, N, 200]`` and ``elem_fea`` float32 ``[B, E, 200]`` in place of
``atom_z`` and ``elem_z`` (zeros on padding); both layouts give bit-identical outputs.

One graph as a record of arrays (:meth:`CGATGraph.to_record`, :meth:`CGATGraph.from_record`, e.g. for
``tf.train.Example``): ``atom_z`` ``[n]``, ``nbr_idx`` and ``nbr_rank`` ``[n, K]`` (or flat ``[n * K]``),
``elem_z`` ``[e]`` (int32) and ``elem_weights`` ``[e]`` (float32).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomsets_tf.data.elements import atomic_numbers_of, element_symbols_of
from atomsets_tf.data.padding import pad_stack, padded_length, size_bucketed_batches
from atomsets_tf.data.records import FieldSpec, RecordSchema
from atomsets_tf.errors import DataFormatError, DisorderedSiteError, EmptyStructureError, UnknownElementError
from atomsets_tf.models.cgat.elements import ElementEmbedding, load_matscholar_embedding
from atomsets_tf.models.cgat.neighbours import describe_structure, neighbour_lists

#: Input names of the CGAT model, in the padded layout (atomic numbers; the model looks the embedding up).
INPUT_KEYS = ("atom_z", "atom_mask", "nbr_idx", "nbr_rank", "elem_z", "elem_weights")
#: The other layout the model accepts: the element features themselves (the original code's inputs).
FEATURE_INPUT_KEYS = ("atom_fea", "atom_mask", "nbr_idx", "nbr_rank", "elem_fea", "elem_weights")
#: Keys of :meth:`CGATGraph.to_record`.
RECORD_KEYS = ("atom_z", "nbr_idx", "nbr_rank", "elem_z", "elem_weights")


def roost_pairs(n_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """The original's explicit ROOST pair lists ``(self_idx, nbr_idx)`` of a crystal with ``n_elements``
    distinct elements: all ordered pairs ``i != j`` (int64; the model forms them densely)."""
    e = int(n_elements)
    self_idx = np.repeat(np.arange(e, dtype=np.int64), max(e - 1, 0))
    nbr_idx = np.array([j for i in range(e) for j in range(e) if j != i], dtype=np.int64)
    return self_idx, nbr_idx


@dataclass
class CGATGraph:
    """Inputs of one crystal (unpadded): integers and the element weights; the element embedding is
    looked up by the model (:meth:`features` gives the vectors of an embedding).

    Attributes:
        atom_z: ``[n]`` int32 atomic number of each site.
        nbr_idx: ``[n, K]`` int32 site index of each site's K nearest neighbours.
        nbr_rank: ``[n, K]`` int32 distance-shell rank 1..K.
        elem_z: ``[e]`` int32 atomic number of each distinct element (order of first appearance).
        elem_weights: ``[e]`` float32 fractional abundance.
        elements: distinct element symbols (order of first appearance); from ``elem_z`` when not given.
        structure_id: optional identifier, for messages.
    """

    atom_z: np.ndarray
    nbr_idx: np.ndarray
    nbr_rank: np.ndarray
    elem_z: np.ndarray
    elem_weights: np.ndarray
    elements: list[str] = field(default_factory=list)
    structure_id: str | None = None

    def __post_init__(self) -> None:
        if not self.elements and len(self.elem_z):
            self.elements = element_symbols_of(self.elem_z, self.structure_id or "")

    @property
    def n_atoms(self) -> int:
        return int(self.atom_z.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the graph's arrays."""
        return sum(int(getattr(self, key).nbytes) for key in RECORD_KEYS)

    def features(self, embedding: ElementEmbedding) -> tuple[np.ndarray, np.ndarray]:
        """The element vectors of the sites and of the distinct elements in ``embedding``.

        Returns:
            ``(atom_fea, elem_fea)``: float32 ``[n, d]`` and ``[e, d]``.

        Raises:
            UnknownElementError: an element missing from the embedding.
        """
        for symbol in self.elements:
            if symbol not in embedding:
                raise UnknownElementError(f"{self.structure_id or 'graph'}: element {symbol!r} is not in the "
                                          f"{embedding.name} element embedding")
        table = embedding.z_table()
        return table[self.atom_z], table[self.elem_z]

    def roost_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The original's explicit ROOST pair lists ``(self_idx, nbr_idx)`` (all ordered pairs i != j)."""
        return roost_pairs(len(self.elem_weights))

    def to_record(self) -> dict[str, np.ndarray]:
        """The graph's arrays by :data:`RECORD_KEYS` (int32 but ``elem_weights`` float32), e.g. for a
        ``tf.train.Example``; :meth:`from_record` reads them back."""
        return {key: getattr(self, key) for key in RECORD_KEYS}

    @classmethod
    def from_record(cls, record: dict[str, Any], structure_id: str | None = None) -> CGATGraph:
        """The graph of a :meth:`to_record` dict (``nbr_idx`` / ``nbr_rank`` may be flat ``[n * K]``).

        Args:
            record: arrays (or lists) under :data:`RECORD_KEYS`.
            structure_id: the graph's identifier, for messages.

        Returns:
            The graph; its ``elements`` are the symbols of ``elem_z``.

        Raises:
            DataFormatError: a missing key, arrays whose lengths do not agree, or an atomic number that is
                no element; the message names ``structure_id``.
        """
        name = structure_id or "graph record"
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise DataFormatError(f"{name}: record lacks {', '.join(missing)}")
        atom_z = np.asarray(record["atom_z"], np.int32).reshape(-1)
        elem_z = np.asarray(record["elem_z"], np.int32).reshape(-1)
        weights = np.asarray(record["elem_weights"], np.float32).reshape(-1)
        n = len(atom_z)
        nbr = [np.asarray(record[key], np.int32) for key in ("nbr_idx", "nbr_rank")]
        fits = n > 0 and len(weights) == len(elem_z) and all(
            a.ndim in (1, 2) and a.size == nbr[0].size and a.size % n == 0 and (a.ndim == 1 or len(a) == n)
            for a in nbr)
        if not fits:
            raise DataFormatError(f"{name}: record arrays do not fit together ({n} atoms, neighbour arrays "
                                  f"{nbr[0].shape} and {nbr[1].shape}, {len(elem_z)} elements and "
                                  f"{len(weights)} weights)")
        nbr_idx, nbr_rank = (a.reshape(n, -1) for a in nbr)
        return cls(atom_z, nbr_idx, nbr_rank, elem_z, weights, element_symbols_of(elem_z, name), structure_id)


def _site_symbols(structure: Any, structure_id: str | None) -> list[str]:
    """Element symbol of every site (one attribute read per site on the ordered path).

    Raises:
        DataFormatError: a disordered site (named by ``structure_id``, else the formula, and its index).
    """
    try:
        return [site.specie.symbol for site in structure]
    except AttributeError:  # pymatgen's ``specie`` refuses a disordered site
        pass
    for i, site in enumerate(structure):
        if not site.is_ordered:
            raise DisorderedSiteError(f"{describe_structure(structure, structure_id)}: site {i} is disordered "
                                      f"({site.species}); CGAT needs ordered sites")
    raise DataFormatError(f"{describe_structure(structure, structure_id)}: a site has no element; CGAT needs ordered sites")


#: What a graph needs of an element embedding: which elements it covers (an :class:`ElementEmbedding`, or
#: a collection of element symbols or atomic numbers).
Coverage = ElementEmbedding | Collection[str] | Collection[int]


def _covered_symbols(embedding: Coverage | None) -> tuple[Collection[str], str]:
    """The element symbols ``embedding`` covers (something that answers ``in``) and its name for messages."""
    if embedding is None:
        embedding = load_matscholar_embedding()
    if isinstance(embedding, ElementEmbedding):
        return embedding, f"{embedding.name} element embedding"
    values = list(embedding)
    if all(isinstance(v, (int, np.integer)) for v in values):
        values = element_symbols_of(values)
    return frozenset(str(v) for v in values), "given element set"


def _check_covered(symbols: Sequence[str], covered: Collection[str], covered_name: str, structure: Any,
                   structure_id: str | None) -> None:
    """Raise :class:`UnknownElementError` (naming the structure) for a symbol not in ``covered``."""
    for symbol in symbols:
        if symbol not in covered:
            raise UnknownElementError(f"{describe_structure(structure, structure_id)}: element {symbol!r} is not in "
                                      f"the {covered_name}")


def structure_to_graph(structure: Any, embedding: Coverage | None = None, radius: float = 18.0,
                       max_neighbors: int = 24, structure_id: str | None = None) -> CGATGraph:
    """Build the CGAT inputs of one pymatgen ``Structure``.

    Args:
        structure: a pymatgen ``Structure`` with ordered sites.
        embedding: the elements the model's embedding covers: an :class:`ElementEmbedding` (only its
            symbols are used) or a collection of element symbols or atomic numbers; ``None`` = the
            matscholar embedding's.
        radius: neighbour cutoff (Å).
        max_neighbors: neighbours kept per site.
        structure_id: names the graph and, in error messages, the structure (else its reduced formula).

    Returns:
        The :class:`CGATGraph`.

    Raises:
        EmptyStructureError: no sites.
        UnknownElementError: an element missing from the embedding.
        TooFewNeighboursError: a site with fewer than ``max_neighbors`` neighbours within ``radius``.
        DataFormatError: a disordered site.
    """
    if len(structure) == 0:
        raise EmptyStructureError(f"{describe_structure(structure, structure_id)}: structure has no sites")
    covered, covered_name = _covered_symbols(embedding)
    symbols = _site_symbols(structure, structure_id)
    counts = Counter(symbols)  # distinct elements in order of first appearance
    distinct = list(counts)
    _check_covered(distinct, covered, covered_name, structure, structure_id)
    try:
        elem_z = atomic_numbers_of(distinct, covered_name)
    except UnknownElementError as exc:
        raise UnknownElementError(f"{describe_structure(structure, structure_id)}: {exc}") from None
    z_of = dict(zip(distinct, elem_z.tolist()))
    atom_z = np.array([z_of[s] for s in symbols], dtype=np.int32)
    idx, rank = neighbour_lists(structure, radius, max_neighbors, structure_id)
    weights = np.array([counts[s] / len(symbols) for s in distinct], dtype=np.float32)
    return CGATGraph(atom_z, idx, rank, elem_z, weights, distinct, structure_id)


#: Bytes of a graph's Python objects besides its arrays' data (the object, five array headers, the element list;
#: ~850 measured), counted by :class:`GraphMemo`.
GRAPH_OBJECT_BYTES = 1024


class GraphMemo:
    """Graphs built in this process, bounded by their bytes (:attr:`CGATGraph.nbytes` +
    :data:`GRAPH_OBJECT_BYTES` each); the least recently used go first. Retraining the same table at
    several data sizes (learning curves), from a parent loaded anew each time, builds each graph once
    (a hit costs ~2 µs, a build 0.5-1 ms).

    An entry is keyed by (structure object, id, radius, neighbours) and holds the structure itself, so its
    ``id`` cannot be reused while the entry lives. A graph does not depend on the embedding's values, only
    on whether the embedding covers its elements, which is checked on every hit.

    Args:
        max_bytes: the bound on the graphs' bytes.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._entries: OrderedDict[tuple, tuple[Any, CGATGraph]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def entry_bytes(graph: CGATGraph) -> int:
        """The bytes a graph counts for."""
        return graph.nbytes + GRAPH_OBJECT_BYTES

    def get(self, key: tuple, structure: Any) -> CGATGraph | None:
        """The graph memoised for ``key`` if it was built from ``structure`` itself, else ``None``."""
        hit = self._entries.get(key)
        if hit is None or hit[0] is not structure:
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: tuple, structure: Any, graph: CGATGraph) -> None:
        """Memoise ``graph``, dropping the least recently used graphs beyond :attr:`max_bytes`."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= self.entry_bytes(old[1])
        self._entries[key] = (structure, graph)
        self.nbytes += self.entry_bytes(graph)
        while self.nbytes > self.max_bytes and self._entries:
            self.nbytes -= self.entry_bytes(self._entries.popitem(last=False)[1][1])

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0


#: The bound of the process's graph memo: 512 MiB, e.g. ~230,000 graphs of 5-7 atoms (jdft2d, perovskites:
#: 1.0-1.4 kB of arrays each), ~65,000 of 35 atoms.
GRAPH_CACHE_BYTES = 512 * 2**20
#: The process's graph memo (:func:`structures_to_graphs`).
GRAPH_MEMO = GraphMemo(GRAPH_CACHE_BYTES)


def structures_to_graphs(structures: Sequence[Any], embedding: Coverage | None = None,
                         radius: float = 18.0, max_neighbors: int = 24,
                         ids: Sequence[str] | None = None) -> list[CGATGraph]:
    """:func:`structure_to_graph` for each structure (the embedding is loaded once; graphs are memoised
    in :data:`GRAPH_MEMO`).

    ``ids`` (one per structure) name the graphs (``structure_id``) and the structures in error messages.

    Raises:
        DataFormatError: as many ids as structures are needed; a disordered site.
        UnknownElementError, EmptyStructureError, TooFewNeighboursError: as :func:`structure_to_graph`.
    """
    if ids is not None and len(ids) != len(structures):
        raise DataFormatError(f"{len(ids)} ids for {len(structures)} structures")
    covered, covered_name = _covered_symbols(embedding)
    graphs = []
    for i, s in enumerate(structures):
        sid = None if ids is None else str(ids[i])
        key = (id(s), sid, float(radius), int(max_neighbors))
        graph = GRAPH_MEMO.get(key, s)
        if graph is None:
            graph = structure_to_graph(s, covered, radius, max_neighbors, sid)
            GRAPH_MEMO.put(key, s, graph)
        else:
            _check_covered(graph.elements, covered, covered_name, s, sid)
        graphs.append(graph)
    return graphs


def collate(graphs: Sequence[CGATGraph], atom_multiple: int = 8, elem_multiple: int = 4,
            targets: Sequence[float] | np.ndarray | None = None,
            embedding: ElementEmbedding | None = None) -> dict[str, np.ndarray]:
    """Pad a list of graphs into one batch (layout in the module docstring).

    Args:
        graphs: the crystals.
        atom_multiple, elem_multiple: padded lengths are rounded up to these, so that few distinct
            shapes reach ``tf.function``.
        targets: with them, the dict also holds ``target`` ``[B]``.
        embedding: with one, the batch holds the element vectors (``atom_fea``, ``elem_fea``, the
            original code's layout) instead of the atomic numbers (``atom_z``, ``elem_z``).

    Returns:
        The padded arrays by :data:`INPUT_KEYS` (with ``embedding``, :data:`FEATURE_INPUT_KEYS`).

    Raises:
        ValueError: no graphs.
        UnknownElementError: (with ``embedding``) an element missing from it.
    """
    if not graphs:
        raise ValueError("collate needs at least one graph")
    n = padded_length(max(g.n_atoms for g in graphs), atom_multiple)
    e = padded_length(max(len(g.elem_weights) for g in graphs), elem_multiple)
    out = {
        "atom_z": pad_stack([g.atom_z for g in graphs], n, 0, np.int32),
        "atom_mask": pad_stack([np.ones(g.n_atoms, np.float32) for g in graphs], n, 0.0, np.float32),
        "nbr_idx": pad_stack([g.nbr_idx for g in graphs], n, 0, np.int32),
        "nbr_rank": pad_stack([g.nbr_rank for g in graphs], n, 0, np.int32),
        "elem_z": pad_stack([g.elem_z for g in graphs], e, 0, np.int32),
        "elem_weights": pad_stack([g.elem_weights for g in graphs], e, 0.0, np.float32),
    }
    if embedding is not None:
        for g in graphs:
            g.features(embedding)  # refuses an element missing from the embedding
        table = embedding.z_table()
        atom_z, elem_z = out.pop("atom_z"), out.pop("elem_z")
        out.update(atom_fea=table[atom_z], elem_fea=table[elem_z])
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


def record_schema(max_neighbors: int = 24) -> RecordSchema:
    """How a CGAT graph is stored in a prepared dataset (:mod:`atomsets_tf.data.prepared_format`): the
    :meth:`CGATGraph.to_record` arrays, per-site ones along the ragged ``atoms`` axis, per-element ones along
    ``elements``; the padded layout of :func:`collate` (``atom_mask`` included) is rebuilt when batches are
    formed."""
    return RecordSchema(
        fields={
            "atom_z": FieldSpec("uint8", (), "atoms", "int32"),
            "nbr_idx": FieldSpec("int32", (int(max_neighbors),), "atoms", "int32"),
            "nbr_rank": FieldSpec("uint8", (int(max_neighbors),), "atoms", "int32"),
            "elem_z": FieldSpec("uint8", (), "elements", "int32"),
            "elem_weights": FieldSpec("float32", (), "elements", "float32"),
        },
        masks={"atom_mask": "atoms"},
        multiples={"atoms": 8, "elements": 4},
        size_group="atoms",
    )


@dataclass(frozen=True)
class GraphRecordBuilder:
    """Builds the prepared-dataset record of one structure with a CGAT's graph settings.

    Picklable and free of TensorFlow, so that ``atomsets-tf prepare --workers N`` runs it in worker processes.

    Args:
        radius: neighbour cutoff (Å).
        max_neighbors: neighbours kept per site.
        elements: the element symbols the model's embedding covers (an element outside them fails the entry).
    """

    radius: float
    max_neighbors: int
    elements: tuple[str, ...]
    kind: str = "cgat-graph"

    @property
    def schema(self) -> RecordSchema:
        return record_schema(self.max_neighbors)

    @property
    def settings(self) -> dict:
        """What the records depend on (compared when a prepared dataset meets a model)."""
        return {"radius": float(self.radius), "max_neighbors": int(self.max_neighbors),
                "elements": sorted(self.elements)}

    def __call__(self, entry: Any, entry_id: str) -> dict[str, np.ndarray]:
        return structure_to_graph(entry, frozenset(self.elements), self.radius, self.max_neighbors,
                                  entry_id).to_record()
