"""Per-element feature tables (the V0 sources of AtomSets-V0)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atomsets_tf import presets
from atomsets_tf.errors import DataFormatError, UnknownElementError, UnknownPresetError

#: File name of the 16-wide elemental embedding that megnet ships.
MEGNET_ELEMENT_TABLE = "elemental_embedding_1MEGNet_layer.json"
#: The preset of the 200-wide matscholar element embedding that CGAT starts from.
MATSCHOLAR_ELEMENT_TABLE_PRESET = "cgat-matscholar-embedding"

#: Element symbols by atomic number, without pymatgen: ``ELEMENT_SYMBOLS[z]`` is element ``z`` (1 = H .. 118 = Og);
#: index 0 is ``""`` (no element, the padding of atomic-number inputs).
ELEMENT_SYMBOLS: tuple[str, ...] = ("", *(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr "
    "Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split())
#: The largest atomic number of :data:`ELEMENT_SYMBOLS`.
MAX_Z = len(ELEMENT_SYMBOLS) - 1
#: Element symbol -> atomic number.
ATOMIC_NUMBERS: dict[str, int] = {symbol: z for z, symbol in enumerate(ELEMENT_SYMBOLS) if symbol}


def atomic_numbers_of(symbols, table_name: str = "periodic") -> np.ndarray:
    """The atomic number of each element symbol (int32), without pymatgen.

    Args:
        symbols: element symbols (``"Fe"``).
        table_name: the table the symbols come from, for the message.

    Returns:
        int32 ``(len(symbols),)``.

    Raises:
        UnknownElementError: a symbol that is no element of the periodic table.

    Example:

    >>> atomic_numbers_of(["Na", "Cl"]).tolist()
    [11, 17]
    """
    try:
        return np.array([ATOMIC_NUMBERS[s] for s in symbols], dtype=np.int32)
    except KeyError as exc:
        raise UnknownElementError(f"{exc.args[0]!r} of the {table_name} table is not an element symbol") from None


def element_symbols_of(atomic_numbers, entry: str = "") -> list[str]:
    """The element symbol of each atomic number, without pymatgen.

    Args:
        atomic_numbers: integers in 1..118.
        entry: the data entry they belong to, for the message.

    Returns:
        The symbols, in order.

    Raises:
        DataFormatError: a number outside 1..118.

    Example:

    >>> element_symbols_of([11, 17])
    ['Na', 'Cl']
    """
    z = np.asarray(atomic_numbers).reshape(-1)
    bad = (z < 1) | (z > MAX_Z)
    if bad.any():
        where = f"{entry}: " if entry else ""
        raise DataFormatError(f"{where}atomic number {z[bad][0]} is no element (1..{MAX_Z})")
    return [ELEMENT_SYMBOLS[int(v)] for v in z.tolist()]


def read_element_vectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a ``{"H": [...], "He": [...], ...}`` JSON file (megnet's and CGAT's format).

    Returns the symbols in file order and a float32 ``(n_symbols, d)`` array.

    Raises:
        DataFormatError: unreadable, not such a mapping, or vectors of different lengths.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"cannot read element table {path}: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise DataFormatError(f"element table {path} is not a mapping of element symbols to vectors")
    symbols = [str(s) for s in raw]
    try:
        vectors = np.stack([np.asarray(raw[s], dtype=np.float64) for s in symbols]).astype(np.float32)
    except ValueError as exc:
        raise DataFormatError(f"element table {path} has vectors of different lengths: {exc}") from None
    if vectors.ndim != 2:
        raise DataFormatError(f"element table {path} does not hold one vector per element")
    return symbols, vectors


def check_known(atomic_numbers, known: np.ndarray, table_name: str, entry: str = "") -> None:
    """Raise :class:`UnknownElementError` for an atomic number whose ``known[z]`` is not set.

    Args:
        atomic_numbers: the atomic numbers to check.
        known: bool ``(rows,)``, which atomic numbers the table covers.
        table_name: the table's name, for the message.
        entry: the data entry being checked, for the message.
    """
    from pymatgen.core import Element  # pymatgen is slow to import: only when a table is built

    for z in np.unique(np.asarray(atomic_numbers)):
        if z < 0 or z >= len(known) or not known[z]:
            symbol = Element.from_Z(int(z)).symbol if 0 < z < 119 else str(z)
            where = f" in {entry}" if entry else ""
            raise UnknownElementError(f"element {symbol}{where} is not in the {table_name} element table")


class ElementTable:
    """A table of per-element feature vectors, indexed by atomic number.

    Args:
        table: float32 ``(max_z + 1, d)``; row ``z`` holds element ``z``.
        known: bool ``(max_z + 1,)``; which rows are real elements of the table.
        name: where the table came from, for messages and model cards.
    """

    def __init__(self, table: np.ndarray, known: np.ndarray, name: str = "table"):
        self.table = np.asarray(table, dtype=np.float32)
        self.known = np.asarray(known, dtype=bool)
        self.name = name

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def check(self, atomic_numbers: np.ndarray, entry: str = "") -> None:
        """Raise :class:`UnknownElementError` if a number has no row in the table."""
        check_known(atomic_numbers, self.known, self.name, entry)

    def standardized(self) -> ElementTable:
        """This table with every column standardised over its known elements (mean 0, standard deviation 1).

        A constant column is only centred; rows of unknown elements stay zero.

        Example:

        >>> table = ElementTable(np.array([[0.0], [1.0], [3.0]]), np.array([False, True, True]))
        >>> table.standardized().table[:, 0].tolist()
        [0.0, -1.0, 1.0]
        """
        rows = self.table[self.known].astype(np.float64)
        std = rows.std(axis=0)
        scaled = (self.table - rows.mean(axis=0)) / np.where(std > 0, std, 1.0)
        return ElementTable(np.where(self.known[:, None], scaled, 0.0), self.known, name=self.name)

    @classmethod
    def concatenate(cls, tables: Sequence[ElementTable], name: str | None = None) -> ElementTable:
        """One table whose row ``z`` is the rows ``z`` of ``tables`` side by side.

        An element is known only where every table knows it (the others are
        unknown: :meth:`check` refuses them); the rows of unknown elements are zero.

        Args:
            tables: one or more tables (widths may differ; lengths too).
            name: the combined table's name (default: the names joined by ``" + "``).

        Raises:
            ValueError: no tables.

        Example:

        >>> a = ElementTable(np.ones((3, 2)), np.array([False, True, True]), "a")
        >>> b = ElementTable(np.ones((2, 1)), np.array([False, True]), "b")
        >>> both = ElementTable.concatenate([a, b])
        >>> both.table.shape, both.known.tolist(), both.name
        ((3, 3), [False, True, False], 'a + b')
        """
        if not tables:
            raise ValueError("concatenate needs at least one element table")
        n_rows = max(len(t.table) for t in tables)
        known = np.ones(n_rows, dtype=bool)
        blocks = []
        for t in tables:
            block = np.zeros((n_rows, t.dim), dtype=np.float32)
            block[: len(t.table)] = t.table
            blocks.append(block)
            covered = np.zeros(n_rows, dtype=bool)
            covered[: len(t.known)] = t.known
            known &= covered
        table = np.where(known[:, None], np.concatenate(blocks, axis=1), 0.0)
        return cls(table, known, name=name or " + ".join(t.name for t in tables))

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> ElementTable:
        """Read a ``{"H": [...], "He": [...], ...}`` JSON table (megnet's format)."""
        from pymatgen.core import Element

        symbols, vectors = read_element_vectors(path)
        rows = {}
        for symbol, vec in zip(symbols, vectors):
            try:
                rows[Element(symbol).Z] = vec
            except (ValueError, KeyError):
                raise DataFormatError(f"element table {path} has an unknown element {symbol!r}") from None
        max_z = max(rows)
        table = np.zeros((max_z + 1, vectors.shape[1]), dtype=np.float32)
        known = np.zeros(max_z + 1, dtype=bool)
        for z, v in rows.items():
            table[z] = v
            known[z] = True
        return cls(table, known, name=name or Path(path).stem)


def megnet_element_table_path() -> Path:
    """Locate megnet's ``elemental_embedding_1MEGNet_layer.json``.

    Resolved like every preset (``$ATOMSETS_TF_MODELS``, the cache, the
    project's ``../shared/pretrained``, then a sha256-checked download), with
    an installed megnet package's own copy as the offline fallback.

    Raises:
        UnknownPresetError: no copy is reachable.
    """
    try:
        return presets.resolve(presets.MEGNET_ELEMENT_TABLE_PRESET, download=False)["json"]
    except UnknownPresetError:
        pass
    try:
        import importlib.util  # only for the optional megnet package's own copy

        spec = importlib.util.find_spec("megnet")
        if spec is not None and spec.origin:
            bundled = Path(spec.origin).parent / "data" / MEGNET_ELEMENT_TABLE
            if bundled.is_file():
                return bundled
    except (ImportError, ValueError):
        pass
    return presets.resolve(presets.MEGNET_ELEMENT_TABLE_PRESET, download=True)["json"]


def megnet_element_table() -> ElementTable:
    """MEGNet's 16-wide elemental embedding (the paper's V0 for compositions)."""
    return ElementTable.from_json(megnet_element_table_path(), name="MEGNet elemental embedding")


def matscholar_element_table() -> ElementTable:
    """The 200-wide matscholar element embedding that CGAT starts from (elements H..Lr).

    Resolved like every preset (``cgat-matscholar-embedding``: ``$ATOMSETS_TF_MODELS``,
    the cache, the project's ``../shared/pretrained``, then a sha256-checked download).

    Raises:
        UnknownPresetError: no copy is reachable.
    """
    path = presets.resolve(MATSCHOLAR_ELEMENT_TABLE_PRESET)["json"]
    return ElementTable.from_json(path, name="matscholar embedding")


#: Where the embedded copies of MEGNet presets' V0 tables live (``<preset>.json.gz``; see
#: ``benchmarks/embed_v0_table.py``), so that AtomSets-V0 on such a table runs offline on a fresh install.
EMBEDDED_V0_DIR = Path(__file__).resolve().parent.parent / "resources" / "megnet_v0"


def embedded_embedding_table(preset: str) -> tuple[np.ndarray, str] | None:
    """The embedded copy of a MEGNet preset's ``atom_embedding`` rows and the sha256 of the checkpoint it was
    read from, or None when the package embeds no copy of that preset.

    The rows are the checkpoint's float32 values, exactly (``tests/test_element_features.py`` compares them
    with the checkpoint itself where ``../shared`` has it).
    """
    path = EMBEDDED_V0_DIR / f"{preset}.json.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as fh:
        raw = json.load(fh)
    return np.asarray(raw["rows"], dtype=np.float32), str(raw["checkpoint_sha256"])
