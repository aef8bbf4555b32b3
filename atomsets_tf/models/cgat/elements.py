"""CGAT's element embedding tables: :class:`ElementEmbedding` (element symbol -> vector), the matscholar
embedding CGAT starts from (the ``cgat-matscholar-embedding`` preset, or ``$ATOMSETS_TF_CGAT_EMBEDDING``), and
tables indexed by atomic number (:func:`atomic_number_rows`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atomsets_tf.data.elements import ATOMIC_NUMBERS, MAX_Z, read_element_vectors
from atomsets_tf.errors import DataFormatError, PresetNotAvailableError, UnknownElementError
from atomsets_tf.presets import resolve

#: File name of the matscholar element embedding CGAT starts from.
MATSCHOLAR_FILE = "matscholar-embedding.json"
#: Environment variable that can point at the matscholar embedding JSON.
EMBEDDING_ENV = "ATOMSETS_TF_CGAT_EMBEDDING"


def atomic_number_rows(symbols: Sequence[str]) -> np.ndarray:
    """For each atomic number 0..118, 1 + the row of its element in ``symbols``, else 0: the rows of
    ``[zeros, table]`` that form a table indexed by atomic number (row 0 and elements not in ``symbols``
    zero). Symbols that are no element are left out.

    Returns:
        int32 ``(MAX_Z + 1,)``.
    """
    rows = np.zeros(MAX_Z + 1, dtype=np.int32)
    for row, symbol in enumerate(symbols):
        z = ATOMIC_NUMBERS.get(symbol)
        if z is not None and rows[z] == 0:
            rows[z] = row + 1
    return rows


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
        self._z_table: np.ndarray | None = None

    @property
    def fingerprint(self) -> str:
        """A digest of the symbols and values: equal for the same embedding loaded twice."""
        if self._fingerprint is None:
            digest = hashlib.sha1(" ".join(self.symbols).encode())
            digest.update(self.table.tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def z_table(self) -> np.ndarray:
        """The table indexed by atomic number: float32 ``(MAX_Z + 1, dim)``, row ``z`` = element ``z``'s
        vector; row 0 (padding) and elements not in the embedding are zeros."""
        if self._z_table is None:
            padded = np.concatenate([np.zeros((1, self.dim), np.float32), self.table])
            self._z_table = padded[atomic_number_rows(self.symbols)]
        return self._z_table

    def rows(self, symbols: Sequence[str]) -> np.ndarray:
        """Row of each symbol in ``table`` (int64).

        Raises:
            UnknownElementError: a symbol not in the embedding.
        """
        try:
            return np.array([self._index[s] for s in symbols], dtype=np.int64)
        except KeyError as exc:
            raise UnknownElementError(f"element {exc.args[0]!r} is not in the {self.name} element embedding") from None

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
        symbols, table = read_element_vectors(path)
        return cls(symbols, table, name=Path(path).name)


#: Preset name of the matscholar embedding (files searched like every preset, see :mod:`atomsets_tf.presets`).
MATSCHOLAR_PRESET = "cgat-matscholar-embedding"


def default_embedding_path(download: bool = True) -> Path:
    """Where the matscholar embedding is: ``$ATOMSETS_TF_CGAT_EMBEDDING`` if set, else the
    ``cgat-matscholar-embedding`` preset (``$ATOMSETS_TF_MODELS``, the cache, ``shared/pretrained``,
    then, with ``download``, a download from the CGAT repository into the cache; sha256-checked).

    Raises:
        PresetNotAvailableError: not found (and not downloadable); a ``FileNotFoundError``.
    """
    if os.environ.get(EMBEDDING_ENV):
        return Path(os.environ[EMBEDDING_ENV])
    try:
        return resolve(MATSCHOLAR_PRESET, download=download)["json"]
    except PresetNotAvailableError as exc:
        raise PresetNotAvailableError(
            f"matscholar embedding not found: {exc}; or set ${EMBEDDING_ENV} to a copy of {MATSCHOLAR_FILE}") from None


def load_matscholar_embedding(path: str | os.PathLike | None = None) -> ElementEmbedding:
    """Load the 200-wide matscholar element embedding (default location: :func:`default_embedding_path`)."""
    return ElementEmbedding.from_json(path if path is not None else default_embedding_path())
