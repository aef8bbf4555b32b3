"""A matminer featurizer of pretrained MEGNet taps (``pip install "atomsets-tf[matminer]"``).

:class:`MEGNetTapFeaturizer` turns pymatgen structures into the features of the AtomSets paper (Chen & Ong
2021): the structure-level taps of a MEGNet (``f``, ``v_r``, ``u1..u3``) as they are, and the atom-level taps
(``V0..V3``) pooled over the sites by the paper's weighted mean (eq. 4, weights = site occupancies:
:class:`~atomsets_tf.layers.WeightedMeanReadout`).

``featurize_dataframe(df, "structure")`` taps the whole column in batches through
:func:`~atomsets_tf.models.loading.tap_table` (not one structure at a time in worker processes).

Example:

>>> featurizer = MEGNetTapFeaturizer(taps=("f", "V1"))  # doctest: +SKIP
>>> df = featurizer.featurize_dataframe(df, "structure")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from atomsets_tf.data.inputs import as_table
from atomsets_tf.data.padding import size_bucketed_batches
from atomsets_tf.data.pipeline import WeightedSets
from atomsets_tf.errors import AtomSetsError, DataFormatError, MissingExtraError, UnknownTapError
from atomsets_tf.layers import WeightedMeanReadout
from atomsets_tf.models.atomsets.features import site_weights
from atomsets_tf.models.loading import load_model, model_kind, tap_table

try:  # optional dependency: the extra atomsets-tf[matminer]
    import matminer  # noqa: F401  (first: a blocked matminer is refused even with its submodules loaded)
    from matminer.featurizers.base import BaseFeaturizer
except ImportError as exc:
    raise MissingExtraError(
        f'atomsets_tf.ext.matminer needs matminer: pip install "atomsets-tf[matminer]" ({exc})') from None

__all__ = ["DEFAULT_MODEL", "DEFAULT_TAPS", "MEGNetTapFeaturizer"]

#: The parent MEGNet of the AtomSets paper's structural models.
DEFAULT_MODEL = "megnet-mp-2019.4.1-formation_energy"
#: The readout that feeds MEGNet's final MLP.
DEFAULT_TAPS = ("f",)
#: Structures per padded batch of the weighted mean (atom-level taps).
_POOL_BATCH = 256

_MEGNET_BIBTEX = """@article{chen2019graph,
  title = {Graph Networks as a Universal Machine Learning Framework for Molecules and Crystals},
  author = {Chen, Chi and Ye, Weike and Zuo, Yunxing and Zheng, Chen and Ong, Shyue Ping},
  journal = {Chemistry of Materials}, volume = {31}, number = {9}, pages = {3564--3572}, year = {2019},
  doi = {10.1021/acs.chemmater.9b01294}
}"""
_ATOMSETS_BIBTEX = """@article{chen2021atomsets,
  title = {AtomSets as a hierarchical transfer learning framework for small and large materials datasets},
  author = {Chen, Chi and Ong, Shyue Ping},
  journal = {npj Computational Materials}, volume = {7}, number = {1}, pages = {173}, year = {2021},
  doi = {10.1038/s41524-021-00639-w}
}"""


def weighted_mean_pool(per_site: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """The weighted mean over the sites of each structure (eq. 4), by the package's
    :class:`~atomsets_tf.layers.WeightedMeanReadout`, on padded size-bucketed batches.

    Args:
        per_site: one float ``(n_sites, d)`` array per structure.
        weights: one float ``(n_sites,)`` array per structure.

    Returns:
        float32 ``(n, d)``.
    """
    sets = WeightedSets([np.asarray(v, np.float32) for v in per_site], [np.asarray(w, np.float32) for w in weights])
    out = np.zeros((len(sets), sets.values[0].shape[1]), dtype=np.float32)
    readout = WeightedMeanReadout()
    for batch in size_bucketed_batches(sets.sizes(), _POOL_BATCH):
        padded = sets.padded(batch)
        out[batch] = np.asarray(readout([padded["features"], padded["weights"]]))
    return out


class MEGNetTapFeaturizer(BaseFeaturizer):
    """Features of a pretrained MEGNet for pymatgen structures (the AtomSets paper's transfer features).

    TensorFlow models do not fork well, so the featurizer runs in the calling process (``n_jobs = 1``):
    :meth:`featurize_many` (and so ``featurize_dataframe``) taps all entries in batches instead of sending
    one structure at a time to worker processes.

    Args:
        model: a MEGNet preset name (``atomsets-tf models``), a checkpoint path (``.hdf5``, ``.keras``) or a
            loaded :class:`~atomsets_tf.models.megnet.model.MEGNet`.
        taps: the taps to featurise, in order: structure-level ones (``f``, ``v_r``, ``u1..u3``) become
            columns as they are; atom-level ones (``V0..V3``) are pooled over the sites by the weighted mean
            (eq. 4, weights = site occupancies).
        chunk_size: structures per :func:`~atomsets_tf.models.loading.tap_table` call; with
            ``ignore_errors``, a chunk that fails is tapped again one structure at a time.

    Raises:
        MissingExtraError: matminer is not installed (when this module is imported).
        UnknownTapError: a tap the model does not have, or a bond-level one, naming it.
        AtomSetsError: ``model`` is not a MEGNet; UnknownPresetError / CheckpointError: it cannot be loaded.
    """

    def __init__(self, model=DEFAULT_MODEL, taps: Sequence[str] = DEFAULT_TAPS, chunk_size: int = 1024):
        self.model = load_model(model) if isinstance(model, (str, os.PathLike)) else model
        if model_kind(self.model) != "megnet":
            raise AtomSetsError(f"MEGNetTapFeaturizer needs a MEGNet model, got a {model_kind(self.model)} model")
        self.taps = [taps] if isinstance(taps, str) else list(taps)
        if not self.taps:
            raise UnknownTapError("MEGNetTapFeaturizer needs at least one tap")
        valid = [name for name in self.model.tap_names if self.model.tap_level(name) != "bond"]
        for name in self.taps:
            if name not in valid:
                raise UnknownTapError(f"unknown tap {name!r} for MEGNetTapFeaturizer (atom- or structure-level "
                                      f"taps of this MEGNet: {', '.join(valid)})")
        self.chunk_size = int(chunk_size)
        self.set_n_jobs(1)

    def feature_labels(self) -> list[str]:
        """``"MEGNet f 0"``, ... for a structure-level tap; ``"MEGNet V1 mean 0"``, ... for an atom-level one."""
        labels = []
        for name in self.taps:
            kind = f"{name} mean" if self.model.is_atom_level(name) else name
            labels += [f"MEGNet {kind} {i}" for i in range(self.model.tap_dim(name))]
        return labels

    def _features(self, structures: list, ids: list[str], progress: bool = False) -> np.ndarray:
        """float64 ``(n, len(feature_labels()))`` for structures, tapped in one :func:`tap_table` call."""
        taps = tap_table(self.model, as_table(structures, ids=ids, source="MEGNetTapFeaturizer"), self.taps, progress=progress)
        columns = []
        for name in self.taps:
            if self.model.is_atom_level(name):
                columns.append(weighted_mean_pool(taps[name], [site_weights(s) for s in structures]))
            else:
                columns.append(np.asarray(taps[name], np.float32))
        return np.concatenate(columns, axis=1).astype(np.float64)

    def featurize(self, structure) -> list[float]:
        """The features of one pymatgen ``Structure`` (see :meth:`feature_labels`).

        Raises:
            DataFormatError: not a ``Structure``; IsolatedAtomError, UnknownElementError, ...: from the graph.
        """
        _check_structure(structure, "the structure")
        return self._features([structure], ["0"])[0].tolist()

    def featurize_many(self, entries, ignore_errors: bool = False, return_errors: bool = False,
                       pbar: bool = True) -> list[list]:
        """The features of many structures, tapped in batches (matminer's signature).

        Args:
            entries: structures (a list, Series, array, or rows of one structure each).
            ignore_errors: NaN features for an entry that fails, instead of raising.
            return_errors: append each entry's error message (NaN when it succeeded); needs ``ignore_errors``.
            pbar: report the tapping's progress on stderr.
        """
        if return_errors and not ignore_errors:
            raise ValueError("Please set ignore_errors to True to use return_errors.")
        structures = [_single(entry) for entry in _entry_list(entries)]
        rows: list[list] = [None] * len(structures)  # type: ignore[list-item]
        for first in range(0, len(structures), max(self.chunk_size, 1)):
            chunk = range(first, min(first + self.chunk_size, len(structures)))
            self._featurize_chunk(structures, list(chunk), rows, ignore_errors, return_errors, bool(pbar))
        return rows

    def _featurize_chunk(self, structures, chunk, rows, ignore_errors, return_errors, progress) -> None:
        """Fill ``rows[i]`` for ``i`` in ``chunk``: one tap call, or one call per entry after an error."""
        try:
            for i in chunk:
                _check_structure(structures[i], f"entry {i}")
            values = self._features([structures[i] for i in chunk], [str(i) for i in chunk], progress)
            for i, row in zip(chunk, values):
                rows[i] = row.tolist() + ([np.nan] if return_errors else [])
            return
        except AtomSetsError:
            if not ignore_errors:
                raise
        for i in chunk:
            try:
                _check_structure(structures[i], f"entry {i}")
                row, error = self._features([structures[i]], [str(i)])[0].tolist(), np.nan
            except AtomSetsError as exc:
                row, error = [np.nan] * len(self.feature_labels()), f"{type(exc).__name__}: {exc}"
            rows[i] = row + ([error] if return_errors else [])

    def citations(self) -> list[str]:
        return [_MEGNET_BIBTEX, _ATOMSETS_BIBTEX]

    def implementors(self) -> list[str]:
        return ["atomsets-tf developers (a Keras 3 port of MEGNet, Chi Chen and Shyue Ping Ong's AtomSets)"]


def _entry_list(entries) -> list:
    """``entries`` (list, tuple, array, Series or DataFrame) as a list of entries."""
    if hasattr(entries, "columns"):  # a DataFrame: its rows
        return list(entries.to_numpy())
    if not isinstance(entries, (list, tuple, np.ndarray)) and not hasattr(entries, "to_numpy"):
        raise DataFormatError(f"entries must be a list-like of structures, got {type(entries).__name__}")
    return list(entries.to_numpy() if hasattr(entries, "to_numpy") else entries)


def _single(entry):
    """One structure from an entry that may be a row of one value (``df[["structure"]].values``)."""
    if isinstance(entry, (tuple, list, np.ndarray)) and len(entry) == 1:
        return entry[0]
    return entry


def _check_structure(value, entry: str) -> None:
    from pymatgen.core import Structure  # pymatgen is slow to import

    if not isinstance(value, Structure):
        raise DataFormatError(f"{entry}: MEGNetTapFeaturizer needs a pymatgen Structure, got a "
                              f"{type(value).__name__}")
