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

from atomsets_tf.data.pipeline import WeightedSets
from atomsets_tf.errors import AtomSetsError

#: Structural model name -> (tap, how it is used: "atom", "vector" or "stats").
STRUCTURAL_MODELS = {
    "atomsets-v1": ("V1", "atom"),
    "atomsets-v2": ("V2", "atom"),
    "atomsets-v3": ("V3", "atom"),
    "mlp-f": ("f", "vector"),
    "mlp-u1": ("u1", "vector"),
    "mlp-u2": ("u2", "vector"),
    "mlp-u3": ("u3", "vector"),
    "mlp-v_r": ("v_r", "vector"),
    "mlp-v0-stats": ("V0", "stats"),
}
#: The AtomSets paper's parent model.
DEFAULT_SOURCE = "megnet-mp-2019.4.1-formation_energy"


def model_key(source: str | os.PathLike) -> str:
    """A stable key of a feature source: the sha256 of its checkpoint file (or of a preset's)."""
    from atomsets_tf import presets

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


def _cache_path(source, tap: str, ids, structures) -> Path:
    from atomsets_tf.presets import cache_dir

    return cache_dir() / "features" / f"{model_key(source)[:16]}-{tap}-{data_key(ids, structures)[:16]}.npz"


def tap_features(source, tap: str, ids, structures, progress: bool = False, cache: bool = True):
    """Tap ``tap`` of the MEGNet ``source`` (a checkpoint path or preset name) for ``structures``.

    Returns a list of float32 ``(n_sites, d)`` arrays (atom-level taps) or a
    float32 ``(n, d)`` array (structure-level taps). Cached on disk.
    """
    from atomsets_tf.megnet.model import load_megnet
    from atomsets_tf.utils.io import atomic_path

    path = _cache_path(source, tap, ids, structures) if cache else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            values, offsets, level = f["values"], f["offsets"], str(f["level"])
        return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])] if level == "atom" else values
    megnet = load_megnet(source)
    level = megnet.tap_level(tap)
    if level == "bond":
        raise AtomSetsError(f"tap {tap!r} is bond-level; the AtomSets models use atom- or structure-level taps")
    out = megnet.tap(structures, [tap], progress=progress, ids=list(ids))[tap]
    if path is not None:
        if level == "atom":
            offsets = np.cumsum([0] + [len(a) for a in out]).astype(np.int64)
            values = np.concatenate(out) if out else np.zeros((0, megnet.tap_dim(tap)), np.float32)
        else:
            offsets, values = np.zeros(1, np.int64), out
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, values=values, offsets=offsets, level=np.array(level))
    return out


def _site_weights(structure) -> np.ndarray:
    """Occupancy of each site (1 for an ordered site)."""
    return np.array([sum(site.species.values()) for site in structure], dtype=np.float32)


def structural_sets(model: str, source, table, progress: bool = False) -> WeightedSets:
    """The weighted sets that the head of ``model`` trains on, tapped from ``source``."""
    if model not in STRUCTURAL_MODELS:
        raise AtomSetsError(f"unknown structural model {model!r}; choose one of {', '.join(STRUCTURAL_MODELS)}")
    if table.kind != "structure":
        raise AtomSetsError(f"{model} needs structures, but {table.source or 'the data'} holds compositions")
    tap, use = STRUCTURAL_MODELS[model]
    feats = tap_features(source, tap, table.ids, table.inputs, progress=progress)
    if use == "atom":
        return WeightedSets([np.asarray(f, np.float32) for f in feats], [_site_weights(s) for s in table.inputs])
    if use == "stats":
        vectors = []
        for f, s in zip(feats, table.inputs):
            w = _site_weights(s)[:, None]
            mean = (w * f).sum(0) / w.sum()
            std = np.sqrt((w * (f - mean) ** 2).sum(0) / w.sum())
            vectors.append(np.concatenate([mean, std, f.min(0), f.max(0)]))
        feats = np.stack(vectors)
    return WeightedSets([np.asarray(v, np.float32)[None, :] for v in feats], [np.ones(1, np.float32)] * len(feats))
