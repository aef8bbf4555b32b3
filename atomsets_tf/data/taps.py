"""The ``.npz`` layout of tapped features (``atomsets-tf tap``, and the feature cache of the AtomSets models).

``ids`` (n,) names the structures. An atom-level tap ``L`` (one ``(n_sites, d)``
array per structure) is stored as float32 ``L`` of shape ``(total_sites, d)`` with
``L.offsets`` int64 ``(n + 1,)``: structure ``i`` owns rows ``offsets[i]:offsets[i + 1]``,
in site order. A structure-level tap is float32 ``(n, d)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

OFFSETS = ".offsets"


def pack_taps(ids: Sequence[str], taps: Mapping[str, object], width: Mapping[str, int] | None = None
              ) -> dict[str, np.ndarray]:
    """The arrays of the layout above for ``taps`` (name -> list of per-structure arrays, or one array).

    ``width`` gives the feature width of an atom-level tap with no structures (for an empty table).
    """
    arrays = {"ids": np.array(list(ids))}
    for name, value in taps.items():
        if isinstance(value, list):
            arrays[name + OFFSETS] = np.cumsum([0] + [len(v) for v in value]).astype(np.int64)
            empty = np.zeros((0, (width or {}).get(name, 0)), np.float32)
            arrays[name] = np.concatenate(value).astype(np.float32) if value else empty
        else:
            arrays[name] = np.asarray(value, dtype=np.float32)
    return arrays


def unpack_taps(arrays: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, object]]:
    """``(ids, taps)`` from arrays of the layout above (the inverse of :func:`pack_taps`)."""
    taps: dict[str, object] = {}
    for name in arrays:
        if name == "ids" or name.endswith(OFFSETS):
            continue
        values = arrays[name]
        if name + OFFSETS in arrays:
            offsets = arrays[name + OFFSETS]
            taps[name] = [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        else:
            taps[name] = values
    return [str(i) for i in arrays["ids"]], taps
