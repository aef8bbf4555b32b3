"""Writing prepared datasets: records built once, in parallel, resumably.

:func:`prepare_dataset` writes a prepared dataset (the folder layout and the
record encoding are in :mod:`atomsets_tf.data.prepared_format`) resumably: a
finished shard is kept. :class:`~atomsets_tf.data.prepared.PreparedDataset`
reads it.

With ``workers > 1`` shards are built in a process pool (forkserver, else
spawn: never a plain fork, the parent may run TensorFlow). Python starts each
worker by importing the main script (not a ``python -m`` module) again, and
with it what the script imports at the top (TensorFlow: seconds per worker,
once per call), so guard the script's work with ``if __name__ == "__main__":``.
Builders are pickled once per worker; they should not import TensorFlow.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from atomsets_tf._version import __version__
from atomsets_tf.data.fingerprints import entries_hash
from atomsets_tf.data.prepared_format import FORMAT, VERSION, Manifest, encode_record
from atomsets_tf.data.records import (
    MANIFEST,
    BuiltEntry,
    RecordBuilder,
    RecordSchema,
    build_entries,
    build_in_worker,
    failure_reason,
    init_worker,
)
from atomsets_tf.data.structures import input_label
from atomsets_tf.errors import AtomSetsError, DataFormatError, PreparedDatasetError
from atomsets_tf.utils.io import LOCK_FILE, atomic_path, output_lock, write_json_atomic
from atomsets_tf.utils.io import sha256_file as file_sha256
from atomsets_tf.utils.progress import progress_bar

__all__ = ["prepare_dataset"]

#: Written first: what a folder is being prepared with (a rerun must match it to resume).
FINGERPRINT = "prepare.json"
_OWN_FILE = re.compile(r"(shard-\d{5,}\.(tfrecord|json)|\.tmp-.*)")


def shard_stem(index: int) -> str:
    """The file name of shard ``index`` without suffix: ``shard-00000``."""
    return f"shard-{index:05d}"


def _write_shard(folder: Path, index: int, built: list[BuiltEntry], schema: RecordSchema) -> dict:
    """Write shard ``index`` (the .tfrecord, then its sidecar, each atomically); returns the sidecar."""
    path = folder / f"{shard_stem(index)}.tfrecord"
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for position, entry_id, record, _ in built:
                if record is not None:
                    writer.write(encode_record(record, schema, position, entry_id))
        sha256 = file_sha256(tmp)
    ok = [b for b in built if b[2] is not None]
    sidecar = {
        "file": path.name,
        "ids": [b[1] for b in ok],
        "positions": [b[0] for b in ok],
        "sizes": [schema.size(b[2]) for b in ok],
        "failures": [{"id": b[1], "reason": b[3]} for b in built if b[2] is None],
        "sha256": sha256,
        "bytes": path.stat().st_size,
        "n_records": len(ok),
    }
    write_json_atomic(folder / f"{shard_stem(index)}.json", sidecar)
    return sidecar


def _finished_shard(folder: Path, index: int, ids: Sequence[str]) -> dict | None:
    """The sidecar of shard ``index`` if it is finished (its sha256 matches) and holds exactly ``ids``."""
    stem = shard_stem(index)
    try:
        sidecar = json.loads((folder / f"{stem}.json").read_text())
        if sidecar["sha256"] != file_sha256(folder / f"{stem}.tfrecord"):
            return None
        listed = [*sidecar["ids"], *(f["id"] for f in sidecar["failures"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sidecar if sorted(listed) == sorted(ids) else None


def package_versions() -> dict[str, str]:
    """Versions of the packages records depend on (pymatgen only when installed)."""
    out = {"atomsets_tf": __version__, "tensorflow": tf.__version__, "numpy": np.__version__}
    try:
        out["pymatgen"] = metadata.version("pymatgen")
    except metadata.PackageNotFoundError:
        pass
    return out


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints, one phrase per difference (``settings.cutoff 5.0 != 4.0``)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key in ("settings", "parent"):
            out += [f"{key}.{k} {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key in ("kind", "shard_size", "format", "version"):
            out.append(f"{key} {a!r} != {b!r}")
        else:
            out.append(f"{key} differs")
    return out


def _claim_folder(folder: Path, fingerprint: dict, restart: bool) -> None:
    """Make ``folder`` ours for ``fingerprint``: refuse another dataset (or clear it on restart), drop stale temps.

    Raises:
        PreparedDatasetError: ``folder`` holds files that are not a prepared
            dataset's, or a dataset prepared with something else (without ``restart``).
    """
    names = sorted(p.name for p in folder.iterdir())
    foreign = [n for n in names if n not in (MANIFEST, FINGERPRINT, LOCK_FILE) and not _OWN_FILE.fullmatch(n)]
    if foreign:
        raise PreparedDatasetError(f"{folder} holds files that are not a prepared dataset's ({', '.join(foreign[:3])}"
                                   f"{', ...' if len(foreign) > 3 else ''}): use an empty or new folder")
    old = None
    if (folder / FINGERPRINT).exists():
        try:
            old = json.loads((folder / FINGERPRINT).read_text())
        except (OSError, ValueError):
            old = {}
    elif any(n != LOCK_FILE for n in names):
        old = {}
    if old is not None and old != fingerprint and not restart:
        what = "; ".join(_differences(old, fingerprint)) if old else f"{FINGERPRINT} is missing or garbled"
        raise PreparedDatasetError(f"{folder} holds a dataset prepared with something else ({what}): "
                                   f"use another folder, or restart=True to clear it")
    for name in names:
        path = folder / name
        if name != LOCK_FILE and (restart or name.startswith(".tmp-")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    write_json_atomic(folder / FINGERPRINT, fingerprint)


class _Progress:
    """One bar on stderr (structures/s, ETA; :func:`~atomsets_tf.utils.progress.progress_bar`)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = progress_bar(total, "preparing", "structure", enabled)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _pool_context(builder: RecordBuilder) -> multiprocessing.context.BaseContext:
    """The process-pool context: forkserver (else spawn), never a plain fork (TensorFlow's threads).

    The fork server preloads the records module and the builder's module, so
    that workers fork with them imported (and ``__main__``, where Python passes
    it on; Python 3.11 does not, and imports the main script in each worker).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", init_worker.__module__, type(builder).__module__])
    return context


def _shard_slices(n_entries: int, shard_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + shard_size, n_entries)) for a in range(0, n_entries, shard_size)]


def _take(entries: Sequence, start: int, stop: int) -> list:
    return [entries[i] for i in range(start, stop)]


def _built_in_process(builder, entries, ids, todo, progress) -> Iterator[tuple[int, list[BuiltEntry]]]:
    for index, (start, stop) in todo:
        yield index, build_entries(builder, builder.schema, _take(entries, start, stop), ids[start:stop], start,
                                   on_entry=progress.update)


def _built_in_pool(builder, entries, ids, todo, workers, progress) -> Iterator[tuple[int, list[BuiltEntry]]]:
    """Shards built by a process pool, yielded in shard order (at most ``4 * workers`` in flight)."""
    pending = deque()
    tasks = iter(todo)
    with ProcessPoolExecutor(workers, mp_context=_pool_context(builder), initializer=init_worker,
                             initargs=(builder,)) as pool:
        try:
            while True:
                while len(pending) < 4 * workers:
                    task = next(tasks, None)
                    if task is None:
                        break
                    index, (start, stop) = task
                    future = pool.submit(build_in_worker, _take(entries, start, stop), ids[start:stop], start)
                    pending.append((index, stop - start, future))
                if not pending:
                    return
                index, n, future = pending.popleft()
                built = future.result()
                progress.update(n)
                yield index, built
        finally:
            for _, _, future in pending:
                future.cancel()


def _built_by_batches(batch_builder, schema, entries, ids, todo, progress) -> Iterator[tuple[int, list[BuiltEntry]]]:
    """Shards built in this process by ``batch_builder(entries, ids) -> [record or AtomSetsError]``."""
    for index, (start, stop) in todo:
        results = list(batch_builder(_take(entries, start, stop), list(ids[start:stop])))
        if len(results) != stop - start:
            raise PreparedDatasetError(f"batch_builder returned {len(results)} results for {stop - start} entries "
                                       f"({ids[start]} ...)")
        built = []
        for k, result in enumerate(results):
            entry_id = ids[start + k]
            if isinstance(result, AtomSetsError):
                built.append((start + k, entry_id, None, failure_reason(result, entry_id)))
            else:
                built.append((start + k, entry_id, schema.check_record(result, entry_id), None))
        progress.update(stop - start)
        yield index, built


def _check_inputs(ids, entries, targets, shard_size, workers) -> tuple[list[str], np.ndarray | None]:
    ids = [str(i) for i in ids]
    if len(ids) != len(entries):
        raise DataFormatError(f"{len(ids)} ids for {len(entries)} entries")
    seen = set()
    for entry_id in ids:
        if entry_id in seen:
            raise DataFormatError(f"entry id {entry_id} appears more than once")
        seen.add(entry_id)
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float64).reshape(len(ids), -1)
        if targets.shape[1] != 1:
            raise DataFormatError(f"targets must hold one value per entry, got shape {targets.shape}")
        targets = targets[:, 0]
    if int(shard_size) < 1 or int(workers) < 1:
        raise ValueError(f"shard_size and workers must be at least 1, got {shard_size} and {workers}")
    return ids, targets


def prepare_dataset(
    ids: Sequence[str],
    entries: Sequence,
    targets: np.ndarray | None,
    out_dir: str | Path,
    builder: RecordBuilder,
    *,
    parent: dict,
    workers: int = 1,
    shard_size: int = 1024,
    strict: bool = False,
    progress: bool = True,
    restart: bool = False,
    batch_builder: Callable[[list, list[str]], list] | None = None,
    source: Any = None,
) -> Manifest:
    """Build the records of ``entries`` once and write them as a prepared dataset in ``out_dir``.

    Shard ``i`` holds the entries ``[i * shard_size, (i + 1) * shard_size)`` that
    succeeded. A finished shard (its sidecar's sha256 matches) is kept, so a
    killed run, rerun, continues and ends with the same manifest and shard bytes.

    Args:
        ids: entry ids, unique; ``ids[i]`` names ``entries[i]``.
        entries: the entries (structures, ...), a sequence.
        targets: one float per entry, or ``None``.
        out_dir: the dataset folder (created; locked while writing).
        builder: the :class:`RecordBuilder` (its kind, schema and settings go to the manifest).
        parent: JSON-able description of the model the records come from
            (``{"family", "name", "sha256", ...}``; ``{}`` for none).
        workers: build shards in this many processes (forkserver / spawn); 1 builds here.
        shard_size: entries per shard.
        strict: raise the first failing entry instead of skipping it.
        progress: one tqdm bar on stderr (only when it is a terminal).
        restart: start from an empty folder: clear what ``out_dir`` holds (a dataset
            prepared with something else, or a finished part of this one).
        batch_builder: ``callable(entries, ids) -> [record or AtomSetsError]``, called
            here shard by shard instead of ``builder`` (for taps that need TensorFlow).
        source: JSON-able description of where the entries came from.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).

    Raises:
        PreparedDatasetError: ``out_dir`` holds another dataset or foreign files;
            with ``strict``, the first failing entry (naming its id); every entry failed
            (naming the first reason; no manifest is written).
        RecordSchemaError: a record that does not follow ``builder.schema``.
        DataFormatError: duplicate ids, or an entry that cannot be fingerprinted
            (:func:`~atomsets_tf.data.fingerprints.entries_hash`).
        RunLockedError: another run is writing ``out_dir``.
    """
    ids, targets = _check_inputs(ids, entries, targets, shard_size, workers)
    folder = Path(out_dir)
    schema = builder.schema
    fingerprint = {"format": FORMAT, "version": VERSION, "kind": builder.kind, "schema": schema.to_json(),
                   "settings": builder.settings, "parent": parent, "data_hash": entries_hash(ids, entries, targets),
                   "shard_size": int(shard_size)}
    try:
        fingerprint = json.loads(json.dumps(fingerprint))  # as a rerun reads it back (tuples become lists)
        json.dumps(source)
    except (TypeError, ValueError) as exc:
        raise PreparedDatasetError(f"the builder's settings, parent and source must be JSON-able ({exc})") from None
    with output_lock(folder):
        _claim_folder(folder, fingerprint, restart)
        sidecars = _build_shards(folder, ids, entries, builder, batch_builder, int(shard_size), int(workers),
                                 strict, progress)
        _check_some_prepared(folder, sidecars, source)
        manifest = _manifest(fingerprint, ids, targets, sidecars, source, entries)
        write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def _build_shards(folder, ids, entries, builder, batch_builder, shard_size, workers, strict, progress) -> list[dict]:
    """The sidecars of every shard, in order: kept when finished, else built and written."""
    slices = _shard_slices(len(ids), shard_size)
    sidecars: dict[int, dict] = {}
    for index, (start, stop) in enumerate(slices):
        sidecar = _finished_shard(folder, index, ids[start:stop])
        if sidecar is not None:
            sidecars[index] = sidecar
    kept_failures = [f for i in sorted(sidecars) for f in sidecars[i]["failures"]]
    if strict and kept_failures:
        raise PreparedDatasetError(f"{kept_failures[0]['reason']} (listed by a finished shard in {folder})")
    todo = [(i, s) for i, s in enumerate(slices) if i not in sidecars]
    bar = _Progress(len(ids), progress)
    bar.update(sum(stop - start for i, (start, stop) in enumerate(slices) if i in sidecars))
    try:
        if batch_builder is not None:
            built_shards = _built_by_batches(batch_builder, builder.schema, entries, ids, todo, bar)
        elif workers > 1 and len(todo) > 1:
            built_shards = _built_in_pool(builder, entries, ids, todo, workers, bar)
        else:
            built_shards = _built_in_process(builder, entries, ids, todo, bar)
        for index, built in built_shards:
            failed = [b for b in built if b[2] is None]
            if strict and failed:
                raise PreparedDatasetError(failed[0][3])
            sidecars[index] = _write_shard(folder, index, built, builder.schema)
    finally:
        bar.close()
    return [sidecars[i] for i in range(len(slices))]


def _check_some_prepared(folder: Path, sidecars: list[dict], source: Any) -> None:
    """Refuse a dataset in which every entry failed (no manifest is written: it is not a dataset)."""
    failures = [f for s in sidecars for f in s["failures"]]
    if failures and not any(s["n_records"] for s in sidecars):
        data = source.get("data") if isinstance(source, dict) else None
        raise PreparedDatasetError(f"none of the {len(failures)} entries{f' of {data}' if data else ''} could be "
                                   f"prepared in {folder}; the first: {failures[0]['reason']}")


def _manifest(fingerprint: dict, ids: list[str], targets, sidecars: list[dict], source: Any,
              entries: Sequence) -> Manifest:
    positions = [p for s in sidecars for p in s["positions"]]
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": fingerprint["kind"],
        "schema": fingerprint["schema"],
        "settings": fingerprint["settings"],
        "parent": fingerprint["parent"],
        "versions": package_versions(),
        "source": source,
        "data_hash": fingerprint["data_hash"],
        "shard_size": fingerprint["shard_size"],
        "n_entries": len(ids),
        "ids": [i for s in sidecars for i in s["ids"]],
        "positions": positions,
        "targets": None if targets is None else [float(targets[p]) for p in positions],
        "inputs": [input_label(entries[p]) for p in positions],  # what a prediction names its entry by
        "sizes": [n for s in sidecars for n in s["sizes"]],
        "shards": [{"file": s["file"], "sha256": s["sha256"], "bytes": s["bytes"], "n_records": s["n_records"],
                    "first_position": s["positions"][0] if s["positions"] else i * fingerprint["shard_size"]}
                   for i, s in enumerate(sidecars)],
        "failures": [f for s in sidecars for f in s["failures"]],
    }
