"""The ``.npz`` layout of tapped features (``atomsets-tf tap``, and the feature cache of the AtomSets models).

``ids`` (n,) names the structures. An atom-level tap ``L`` (one ``(n_sites, d)``
array per structure) is stored as float32 ``L`` of shape ``(total_sites, d)`` with
``L.offsets`` int64 ``(n + 1,)``: structure ``i`` owns rows ``offsets[i]:offsets[i + 1]``,
in site order. A structure-level tap is float32 ``(n, d)``.

A *tap folder* (``atomsets-tf tap -o DIR/``) holds the same features in shards
``taps-00000.npz``, ``taps-00001.npz``, ..., each a file of the layout above for
consecutive entries (its own ``ids``; ``L.offsets`` local to the shard), and
``index.json``, written last::

    {"format": "atomsets-tf tap shards", "version": 1, "n": total entries,
     "model": "...", "data": "...", "shard_size": N, "settings": "<fingerprint>",
     "taps": {name: {"level": "atom" | "structure" | "model", "width": d}},
     "shards": [{"file": "taps-00000.npz", "n": entries, "first": index of its first entry,
                 "sha256": "...", "bytes": its size}, ...]}

Every ``file`` must be a plain file name in the folder (no path, no symlink leading out of it): an index that
lists anything else is refused before any shard is read.

:func:`read_tap_shards` yields one shard at a time, :func:`load_tap_folder` joins them.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from atomsets_tf.errors import DataFormatError
from atomsets_tf.utils.io import check_file_size, listed_file
from atomsets_tf.utils.io import sha256_file as file_sha256

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


# ---------------------------------------------------------------- sharded tap folders
#: The index of a sharded tap folder; written last, so its presence means the folder is complete.
INDEX_FILE = "index.json"
#: The index a writer keeps while shards are still being written (what an interrupted run resumes from).
PARTIAL_INDEX_FILE = "index.partial.json"
#: ``format`` of :data:`INDEX_FILE`.
FOLDER_FORMAT = "atomsets-tf tap shards"
FOLDER_VERSION = 1
#: Tap levels in the index: ``atom`` (rows per entry, with offsets), ``structure`` (one row per entry),
#: ``model`` (one array for the whole model, e.g. CGAT's ``edge_fea_table_k``: the same in every shard).
LEVELS = ("atom", "structure", "model")


def shard_name(k: int) -> str:
    """The file name of shard ``k`` of a tap folder: ``taps-00000.npz``, ``taps-00001.npz``, ..."""
    return f"taps-{k:05d}.npz"


def tap_levels(n: int, taps: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """``{name: {"level", "width"}}`` of the taps of ``n`` entries (levels: :data:`LEVELS`).

    A list (one array per entry) is atom level; an array with one row per entry is
    structure level; any other array is model level.
    """
    levels: dict[str, dict[str, object]] = {}
    for name, value in taps.items():
        if isinstance(value, list):
            width = int(np.shape(value[0])[-1]) if value else None
            levels[name] = {"level": "atom", "width": width}
        else:
            shape = np.shape(value)
            level = "structure" if len(shape) == 2 and shape[0] == n else "model"
            levels[name] = {"level": level, "width": int(shape[-1]) if shape else None}
    return levels


def is_tap_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete sharded tap folder (a folder holding :data:`INDEX_FILE`)."""
    path = Path(path)
    return path.is_dir() and (path / INDEX_FILE).is_file()


def read_tap_index(folder: str | os.PathLike, name: str = INDEX_FILE) -> dict:
    """The index of a sharded tap folder, checked for its format.

    Raises:
        DataFormatError: naming the index file when it is missing, not JSON, or not a tap index.
    """
    path = Path(folder) / name
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFormatError(f"{path} not found: {folder} is not a complete tap folder "
                              f"(an interrupted 'atomsets-tf tap' resumes when rerun)") from None
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path} is not a readable tap index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FOLDER_FORMAT or not isinstance(
            index.get("shards"), list):
        raise DataFormatError(f"{path} is not a tap index (no format {FOLDER_FORMAT!r} with a list of shards)")
    if index.get("version", 0) > FOLDER_VERSION:
        raise DataFormatError(f"{path} is version {index['version']}; this atomsets-tf reads up to {FOLDER_VERSION}")
    for shard in index["shards"]:
        if not isinstance(shard, dict):
            raise DataFormatError(f"{path} lists a shard that is not an object ({shard!r})")
        shard_path(folder, shard, name)
    return index


def shard_path(folder: str | os.PathLike, shard: Mapping[str, object], index_name: str = INDEX_FILE) -> Path:
    """The path of a shard that an index of ``folder`` lists, refused unless it is a plain file name in ``folder``
    (:func:`~atomsets_tf.utils.io.listed_file`).

    Raises:
        DataFormatError: naming the index and the entry.
    """
    return listed_file(folder, shard.get("file"), Path(folder) / index_name, DataFormatError)


def read_shard(folder: str | os.PathLike, shard: Mapping[str, object]) -> tuple[list[str], dict[str, object]]:
    """``(ids, taps)`` of one shard of an index, checked against its byte count (when the index records one),
    sha256 and entry count.

    Raises:
        DataFormatError: naming the shard file when it is missing, corrupt, not the one the index lists or not in
            ``folder``.
    """
    path = shard_path(folder, shard)
    if "bytes" in shard:  # indexes written before byte counts were recorded have none
        check_file_size(path, shard["bytes"], Path(folder) / INDEX_FILE, DataFormatError)
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise DataFormatError(f"tap shard {path} cannot be read ({exc.strerror or exc})") from None
    if digest != shard.get("sha256"):
        raise DataFormatError(f"tap shard {path} is corrupt or was replaced: its sha256 is not the one "
                              f"{INDEX_FILE} lists")
    try:
        with np.load(path, allow_pickle=False) as npz:
            ids, taps = unpack_taps({k: npz[k] for k in npz.files})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"tap shard {path} is not a tap .npz ({exc})") from None
    if len(ids) != shard.get("n"):
        raise DataFormatError(f"tap shard {path} holds {len(ids)} entries, {INDEX_FILE} lists {shard.get('n')}")
    return ids, taps


def read_tap_shards(folder: str | os.PathLike) -> Iterator[tuple[list[str], dict[str, object]]]:
    """``(ids, taps)`` of each shard of a complete tap folder, in order (one shard in memory at a time).

    Each ``taps`` is in the form :func:`unpack_taps` returns, local to its shard.

    Raises:
        DataFormatError: naming the index or the shard file that is missing or corrupt.
    """
    index = read_tap_index(folder)
    for shard in index["shards"]:
        yield read_shard(folder, shard)


def load_tap_folder(folder: str | os.PathLike) -> tuple[list[str], dict[str, object]]:
    """``(ids, taps)`` of a whole tap folder, shards concatenated: the same as the one-file layout gives.

    Atom-level taps are lists of per-entry arrays, structure-level taps one ``(n, d)``
    array, model-level taps the array of the first shard. A folder of no entries
    has no shards, and so no taps: ``([], {})``.

    Raises:
        DataFormatError: naming the index or the shard file that is missing or corrupt.
    """
    index = read_tap_index(folder)
    levels = index.get("taps", {})
    ids: list[str] = []
    parts: dict[str, list] = {name: [] for name in levels}
    for shard_ids, taps in read_tap_shards(folder):
        ids.extend(shard_ids)
        for name, info in levels.items():
            if info["level"] == "atom":
                parts[name].extend(taps[name])
            elif info["level"] == "structure" or not parts[name]:
                parts[name].append(taps[name])
    joined: dict[str, object] = {}
    for name, info in levels.items():
        if info["level"] == "atom":
            joined[name] = parts[name]
        elif info["level"] == "structure":
            width = info.get("width") or 0
            joined[name] = np.concatenate(parts[name]) if parts[name] else np.zeros((0, width), np.float32)
        else:
            joined[name] = parts[name][0] if parts[name] else None
    return ids, joined
