"""Features tapped from a pretrained MEGNet, for the structural models of the AtomSets paper (Table 1).

=================  ===========  =====================================================
model              tap          what the head sees
=================  ===========  =====================================================
``atomsets-v0``    ``V0``       per-site V0 rows (the parent checkpoint's embedding)
``atomsets-v1..3`` ``V1..V3``   per-site features after graph block i (before the add)
``mlp-v0-stats``   ``V0``       mean, std, min and max of V0 over the sites
``mlp-u1..3``      ``u1..u3``   the state vector after graph block i
``mlp-v_r``        ``v_r``      the atom set2set readout
``mlp-f``          ``f``        the readout that feeds MEGNet's final MLP
=================  ===========  =====================================================

Per-site features train an AtomSets head (sites weighted by occupancy);
structure-level vectors train an MLP, which is an AtomSets head on a set of one
element with no layer before the (trivial) readout.

Taps are computed once and cached in ``<cache>/features``, keyed by the
model's file hash, the tap and a hash of the structures.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from atomsets_tf import presets
from atomsets_tf.data.io import Table
from atomsets_tf.data.pipeline import WeightedSets, compositions_to_sets
from atomsets_tf.data.records import FieldSpec, RecordSchema
from atomsets_tf.data.taps import pack_taps, unpack_taps
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.atomsets import STRUCTURAL_MODELS
from atomsets_tf.models.megnet.model import load_megnet
from atomsets_tf.models.registry import DEFAULT_SOURCE
from atomsets_tf.utils.io import atomic_path

__all__ = ["DEFAULT_SOURCE", "STRUCTURAL_MODELS", "TapRecordBuilder", "composition_sets",
           "structural_sets", "tap_features", "tap_records_to_sets", "table_compositions"]

def model_key(source: str | os.PathLike) -> str:
    """A stable key of a feature source: the sha256 of its checkpoint file (or of a preset's)."""
    p = Path(os.fspath(source))
    if p.is_file():
        return presets.sha256_file(p)
    preset = presets.get_preset(str(source))
    return next(iter(preset.files.values())).sha256


def data_key(ids, structures) -> str:
    """A hash of the ids and structures of a data set."""
    h = hashlib.sha256()
    for i, s in zip(ids, structures):
        h.update(str(i).encode())
        h.update(json.dumps(s.as_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


#: Version of the feature cache's file layout (part of each file's name: a new layout never reads an old file).
CACHE_LAYOUT = "taps1"


def _cache_path(source, tap: str, ids, structures) -> Path:
    key = f"{model_key(source)[:16]}-{tap}-{data_key(ids, structures)[:16]}"
    return presets.cache_dir() / "features" / f"{key}.{CACHE_LAYOUT}.npz"


def tap_features(source, tap: str, ids, structures, progress: bool = False, cache: bool = True):
    """Tap ``tap`` of the MEGNet ``source`` (a checkpoint path or preset name) for ``structures``.

    Returns a list of float32 ``(n_sites, d)`` arrays (atom-level taps) or a
    float32 ``(n, d)`` array (structure-level taps). Cached on disk, in the
    layout of :mod:`atomsets_tf.data.taps`.
    """
    path = _cache_path(source, tap, ids, structures) if cache else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            return unpack_taps({k: f[k] for k in f.files})[1][tap]
    megnet = load_megnet(source)
    if megnet.tap_level(tap) == "bond":
        raise AtomSetsError(f"tap {tap!r} is bond-level; the AtomSets models use atom- or structure-level taps")
    out = megnet.tap(structures, [tap], progress=progress, ids=list(ids))[tap]
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **pack_taps(ids, {tap: out}, {tap: megnet.tap_dim(tap)}))
    return out


def site_weights(structure) -> np.ndarray:
    """The weight of each site in the paper's weighted readouts (eq. 4): its occupancy (1 for an ordered site)."""
    return np.array([sum(site.species.values()) for site in structure], dtype=np.float32)


def _as_set(use: str, feature: np.ndarray, structure) -> tuple[np.ndarray, np.ndarray]:
    """The weighted set (values, weights) a head of kind ``use`` sees for one structure's tapped ``feature``:
    per-site rows (``atom``), or a set of one vector (structure-level taps, ``stats`` of the per-site rows)."""
    if use == "atom":
        return np.asarray(feature, np.float32), site_weights(structure)
    if use == "stats":
        w = site_weights(structure)[:, None]
        mean = (w * feature).sum(0) / w.sum()
        std = np.sqrt((w * (feature - mean) ** 2).sum(0) / w.sum())
        feature = np.concatenate([mean, std, feature.min(0), feature.max(0)])
    return np.asarray(feature, np.float32)[None, :], np.ones(1, np.float32)


def structural_sets(model: str, source, table, progress: bool = False) -> WeightedSets:
    """The weighted sets that the head of ``model`` trains on, tapped from ``source`` for a table in memory."""
    if model not in STRUCTURAL_MODELS:
        raise AtomSetsError(f"unknown structural model {model!r}; choose one of {', '.join(STRUCTURAL_MODELS)}")
    if table.kind != "structure":
        raise AtomSetsError(f"{model} needs structures, but {table.source or 'the data'} holds compositions")
    tap, use = STRUCTURAL_MODELS[model]
    feats = tap_features(source, tap, table.ids, table.inputs, progress=progress)
    pairs = [_as_set(use, f, s) for f, s in zip(feats, table.inputs)]
    return WeightedSets([v for v, _ in pairs], [w for _, w in pairs])


def tap_records_to_sets(records) -> WeightedSets:
    """The weighted sets of :class:`TapRecordBuilder`'s records."""
    return WeightedSets([r["features"] for r in records], [r["weights"] for r in records])


class TapRecordBuilder:
    """Builds the prepared-dataset records of a structural AtomSets model: the weighted set its head reads,
    tapped from the parent MEGNet ``source``.

    It runs the MEGNet, so it builds whole shards in the preparing process (:meth:`build_batch`, the
    ``batch_builder`` of :func:`~atomsets_tf.data.prepared_writer.prepare_dataset`).

    Args:
        model: a structural model name (``atomsets-v1``, ``mlp-f``, ...).
        source: the parent MEGNet, a checkpoint path or preset name.
    """

    kind = "atomsets-taps"

    def __init__(self, model: str, source) -> None:
        if model not in STRUCTURAL_MODELS:
            raise AtomSetsError(f"unknown structural model {model!r}; choose one of {', '.join(STRUCTURAL_MODELS)}")
        self.model, self.source = model, source
        self.tap, self.use = STRUCTURAL_MODELS[model]
        self._megnet = None

    @property
    def megnet(self):
        if self._megnet is None:
            self._megnet = load_megnet(self.source)
        return self._megnet

    @property
    def label(self) -> str:
        """What a refusal calls the records: the model and its tap."""
        return f"{self.model} (tap {self.tap})"

    @property
    def parent(self) -> dict:
        """The parent a manifest records: the MEGNet tapped, its sha256 and the model the taps are for."""
        return {"family": "megnet", "name": str(self.source), "sha256": self.settings["source_sha256"],
                "for": self.model}

    @property
    def settings(self) -> dict:
        """What the records depend on: the tap, how the head uses it, and the parent's file hash."""
        return {"tap": self.tap, "use": self.use, "source_sha256": model_key(self.source)}

    @property
    def schema(self) -> RecordSchema:
        dim = self.megnet.tap_dim(self.tap) * (4 if self.use == "stats" else 1)
        return RecordSchema(fields={"features": FieldSpec("float32", (dim,), "atoms", "float32"),
                                    "weights": FieldSpec("float32", (), "atoms", "float32")},
                            masks={}, multiples={"atoms": 8}, size_group="atoms")

    def build_batch(self, entries, ids) -> list:
        """The record of each entry, or the :class:`~atomsets_tf.errors.AtomSetsError` that refused it."""
        out: list = [None] * len(entries)
        graphs, where = [], []
        for i, (structure, entry_id) in enumerate(zip(entries, ids)):
            try:
                graphs.append(self.megnet.graph(structure, label=str(entry_id)))
                where.append(i)
            except AtomSetsError as exc:
                out[i] = exc
        feats = self.megnet.run_graphs(graphs, [self.tap])[self.tap] if graphs else []
        for i, feature in zip(where, feats):
            values, weights = _as_set(self.use, np.asarray(feature), entries[i])
            out[i] = {"features": values, "weights": weights}
        return out


def table_compositions(table: Table) -> list:
    """The compositions of a table's entries (a structure's own composition)."""
    return table.inputs if table.kind == "composition" else [s.composition for s in table.inputs]


def composition_sets(table: Table, element_table=None, model=None) -> WeightedSets:
    """A table's compositions as weighted sets of elements (V0 rows from ``element_table`` when given); with
    ``model``, every entry's elements are checked against what ``model`` knows.

    Raises:
        UnknownElementError: an element the table or the model has no row for, naming the entry.
    """
    sets = compositions_to_sets(table_compositions(table), table.ids, element_table)
    if model is not None:
        for entry_id, zs in zip(table.ids, sets.values):
            model.check_elements(zs, entry_id)
    return sets
