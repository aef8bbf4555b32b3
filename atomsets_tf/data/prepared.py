"""Prepared datasets: records built once, in parallel, then streamed with ``tf.data``.

A *prepared dataset* is a folder of TFRecord shards of records (see
:mod:`atomsets_tf.data.records`) and a ``manifest.json``::

    manifest.json           what the records are (kind, schema, settings, parent), which entries they
                            hold (ids, positions, targets, sizes), the shards and their sha256, the failures
    shard-00000.tfrecord    tf.train.Example records of entries [0, shard_size) that succeeded
    shard-00000.json        its sidecar: ids, positions, sizes, failures, sha256, n_records

:func:`prepare_dataset` writes one (resumably: a finished shard is kept), and
:class:`PreparedDataset` opens, checks and streams it: ``stream`` yields padded,
size-bucketed batches whose layout is :meth:`RecordSchema.pad_batch`'s, sharded
by file under ``tf.distribute``.

With ``workers > 1`` shards are built in a process pool (forkserver, else
spawn: never a plain fork, the parent may run TensorFlow). Python starts each
worker by importing the main script (not a ``python -m`` module) again, and
with it what the script imports at the top (TensorFlow: seconds per worker,
once per call), so guard the script's work with ``if __name__ == "__main__":``.
Builders are pickled once per worker; they should not import TensorFlow.

Each field of a record is stored as its raw little-endian bytes (``f:<name>``),
with one length per length group (``n:<group>``), the entry's global position
(``position``, its index in the ``entries`` given to :func:`prepare_dataset`)
and its id (``id``).
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
from atomsets_tf.data.records import (
    MANIFEST,
    BuiltEntry,
    FieldSpec,
    RecordBuilder,
    RecordSchema,
    build_entries,
    build_in_worker,
    failure_reason,
    init_worker,
)
from atomsets_tf.data.structures import input_label
from atomsets_tf.errors import AtomSetsError, CorruptShardError, DataFormatError, PreparedDatasetError
from atomsets_tf.utils.io import LOCK_FILE, atomic_path, check_file_size, listed_file, output_lock, write_json_atomic
from atomsets_tf.utils.io import sha256_file as file_sha256
from atomsets_tf.utils.progress import progress_bar

__all__ = [
    "FORMAT",
    "FieldSpec",
    "Manifest",
    "PreparedDataset",
    "RecordBuilder",
    "RecordSchema",
    "default_bucket_boundaries",
    "prepare_dataset",
]

#: The ``format`` of every manifest.
FORMAT = "atomsets-tf-prepared"
#: The manifest layout version.
VERSION = 1
#: Written first: what a folder is being prepared with (a rerun must match it to resume).
FINGERPRINT = "prepare.json"
_OWN_FILE = re.compile(r"(shard-\d{5,}\.(tfrecord|json)|\.tmp-.*)")

#: A manifest, as the JSON dict written to ``manifest.json``.
Manifest = dict


def shard_stem(index: int) -> str:
    """The file name of shard ``index`` without suffix: ``shard-00000``."""
    return f"shard-{index:05d}"


def _encode(record: dict[str, np.ndarray], schema: RecordSchema, position: int, entry_id: str) -> bytes:
    """One record as a serialised tf.train.Example (deterministic bytes)."""
    feature = {
        "position": tf.train.Feature(int64_list=tf.train.Int64List(value=[position])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[entry_id.encode()])),
    }
    for group, n in schema.lengths(record).items():
        feature[f"n:{group}"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[n]))
    for name in schema.fields:
        feature[f"f:{name}"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[record[name].tobytes()]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def _write_shard(folder: Path, index: int, built: list[BuiltEntry], schema: RecordSchema) -> dict:
    """Write shard ``index`` (the .tfrecord, then its sidecar, each atomically); returns the sidecar."""
    path = folder / f"{shard_stem(index)}.tfrecord"
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for position, entry_id, record, _ in built:
                if record is not None:
                    writer.write(_encode(record, schema, position, entry_id))
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


def default_bucket_boundaries(sizes: np.ndarray, batch_size: int, max_buckets: int = 8) -> list[int]:
    """Size-bucket boundaries at the quantiles of ``sizes``, each bucket holding about 4 batches or more.

    Returns:
        Strictly increasing ints; bucket ``b`` holds the sizes in
        ``[boundaries[b-1], boundaries[b])`` (``tf.data.Dataset.bucket_by_sequence_length``).
    """
    sizes = np.asarray(sizes)
    n_buckets = int(np.clip(len(sizes) // max(4 * int(batch_size), 1), 1, max_buckets))
    if n_buckets == 1:
        return []
    cuts = np.ceil(np.quantile(sizes, np.linspace(0, 1, n_buckets + 1)[1:-1]))
    return [int(c) for c in np.unique(cuts) if c > sizes.min()]


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise PreparedDatasetError(f"{path} does not exist: not a prepared dataset") from None
    except (OSError, ValueError) as exc:
        raise PreparedDatasetError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PreparedDatasetError(f"{path} is not the manifest of a prepared dataset (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") != VERSION:
        raise PreparedDatasetError(f"{path} has manifest version {manifest.get('version')}; this atomsets-tf "
                                   f"reads version {VERSION}")
    return manifest


class PreparedDataset:
    """A prepared dataset opened for reading (see :func:`prepare_dataset`).

    Attributes:
        path: the dataset folder.
        kind, schema, settings, parent, source: as prepared.
        ids: the ids of the records, in position order.
        positions: int64, each record's position among the entries given to :func:`prepare_dataset`.
        targets: float64 array aligned with ``ids``, or ``None``.
        sizes: int64, each record's size (length of the schema's size group).
        shards: ``[{"file", "sha256", "bytes", "n_records", "first_position"}]``.
        failures: ``[{"id", "reason"}]`` of the entries that were skipped.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest_path = path / MANIFEST
        try:
            self.kind = str(manifest["kind"])
            self.schema = RecordSchema.from_json(manifest["schema"])
            self.settings = dict(manifest["settings"])
            self.parent = dict(manifest["parent"] or {})
            self.source = manifest.get("source")
            self.versions = dict(manifest.get("versions") or {})
            self.n_entries = int(manifest["n_entries"])
            self.ids = [str(i) for i in manifest["ids"]]
            self.positions = np.asarray(manifest["positions"], dtype=np.int64)
            targets = manifest["targets"]
            self.targets = None if targets is None else np.asarray(targets, dtype=np.float64)
            self.inputs = None if manifest.get("inputs") is None else [str(x) for x in manifest["inputs"]]
            self.sizes = np.asarray(manifest["sizes"], dtype=np.int64)
            self.shards = [dict(s) for s in manifest["shards"]]
            self.failures = list(manifest["failures"])
            counts = np.array([int(s["n_records"]) for s in self.shards], dtype=np.int64)
            self._shard_bytes = [_byte_count(s["bytes"]) for s in self.shards]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PreparedDatasetError(f"{self.manifest_path} is garbled ({type(exc).__name__}: {exc})") from None
        lengths = {len(self.ids), len(self.positions), len(self.sizes), int(counts.sum())}
        if len(lengths) != 1 or (self.targets is not None and len(self.targets) != len(self.ids)):
            raise PreparedDatasetError(f"{self.manifest_path} is garbled (ids, positions, sizes, targets and "
                                       f"shard record counts disagree)")
        #: the shard of each record (index into ``shards``)
        self.record_shards = np.repeat(np.arange(len(self.shards)), counts)
        self._shard_files = [listed_file(path, s.get("file"), self.manifest_path, PreparedDatasetError)
                             for s in self.shards]

    @classmethod
    def open(cls, path: str | Path) -> PreparedDataset:
        """Open the prepared dataset in folder ``path`` (or whose ``manifest.json`` is ``path``).

        Raises:
            PreparedDatasetError: a missing, garbled or foreign manifest, naming it.
        """
        path = Path(path)
        folder = path.parent if path.name == MANIFEST and not path.is_dir() else path
        return cls(folder, _read_manifest(folder / MANIFEST))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.path)!r}, kind={self.kind!r}, records={len(self)})"

    @property
    def shard_files(self) -> list[Path]:
        """The shard files, in order (each checked, when the dataset was opened, to lie in :attr:`path`)."""
        return list(self._shard_files)

    def check_compatible(self, kind: str, settings: dict, parent_sha256: str | None = None,
                         what: str = "this model") -> None:
        """Refuse records that ``what`` (built with ``kind``, ``settings``, parent ``parent_sha256``) cannot use.

        Raises:
            PreparedDatasetError: naming the manifest and every difference
                (``prepared for megnet-graph, not cgat-graph``, ``prepared with cutoff 5.0,
                this model uses 4.0``, ``prepared from another parent model (sha256 ab12.. != cd34..)``).
        """
        settings = json.loads(json.dumps(settings))  # as the manifest holds them (tuples become lists)
        problems = []
        if kind != self.kind:
            problems.append(f"prepared for {self.kind}, not {kind}")
        for key in sorted(set(self.settings) | set(settings)):
            mine, theirs = self.settings.get(key), settings.get(key)
            if key not in self.settings:
                problems.append(f"prepared without {key}, {what} uses {theirs!r}")
            elif key not in settings:
                problems.append(f"prepared with {key} {mine!r}, {what} has no {key}")
            elif mine != theirs:
                problems.append(f"prepared with {key} {mine!r}, {what} uses {theirs!r}")
        mine = self.parent.get("sha256")
        if parent_sha256 is not None and mine != parent_sha256:
            problems.append(f"prepared from another parent model (sha256 {str(mine)[:12]}.. != {parent_sha256[:12]}..)")
        if problems:
            raise PreparedDatasetError(f"{self.manifest_path} does not fit {what}: {'; '.join(problems)}")

    def verify(self) -> None:
        """Check every shard's byte count and sha256 against the manifest.

        Raises:
            CorruptShardError: naming the first shard file that is missing or differs.
        """
        for j, (shard, path) in enumerate(zip(self.shards, self._shard_files)):
            self.check_sizes([j])
            try:
                digest = file_sha256(path)
            except OSError as exc:
                raise CorruptShardError(f"shard {path} cannot be read ({exc.strerror or exc})") from None
            if digest != shard["sha256"]:
                raise CorruptShardError(f"shard {path} is corrupt: its sha256 {digest[:12]}.. differs from the "
                                        f"manifest's {shard['sha256'][:12]}.. (prepare the dataset again)")

    def check_sizes(self, shard_indices: Sequence[int] | None = None) -> None:
        """Cheap check of shard file sizes against the manifest's byte counts (catches truncated, grown and missing
        shards); :meth:`records`, :meth:`stream` and :meth:`verify` call it before reading a shard.

        Raises:
            CorruptShardError: naming the shard file.
        """
        for j in range(len(self.shards)) if shard_indices is None else shard_indices:
            check_file_size(self._shard_files[j], self._shard_bytes[j], self.manifest_path, CorruptShardError)

    def data_loss_error(self, exc: Exception) -> CorruptShardError:
        """The CorruptShardError for a ``tf.errors.DataLossError`` raised while streaming (finds the shard).

        ``tf.data`` does not name the file of a corrupt record; this verifies every
        shard to name it. Use it around ``model.fit``: ``except tf.errors.DataLossError
        as e: raise dataset.data_loss_error(e) from e``.
        """
        try:
            self.verify()
        except CorruptShardError as found:
            return found
        return CorruptShardError(f"a shard of {self.path} is corrupt ({str(exc).strip()[:200]}), although every "
                                 f"sha256 matches the manifest")

    def _selection(self, indices: Sequence[int] | None) -> np.ndarray:
        """``indices`` (positions in :attr:`ids`) as int64, checked; all records for ``None``."""
        if indices is None:
            return np.arange(len(self), dtype=np.int64)
        selection = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(selection) and (selection.min() < 0 or selection.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}) for {self.path}")
        if len(np.unique(selection)) != len(selection):
            raise ValueError("indices hold an index more than once")
        return selection

    def records(self, indices: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
        """The records (NumPy, stored dtypes) at ``indices`` (positions in :attr:`ids`), in that order.

        Raises:
            CorruptShardError: a truncated or corrupt shard, naming it.
        """
        selection = self._selection(indices)
        wanted = set(self.positions[selection].tolist())
        found: dict[int, dict] = {}
        for j in sorted(set(self.record_shards[selection].tolist())):
            self.check_sizes([j])
            try:
                found.update(_shard_records(self.shard_files[j], self.schema, wanted))
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, ValueError) as exc:
                raise CorruptShardError(f"shard {self.shard_files[j]} is corrupt ({_first_line(exc)}): prepare "
                                        f"the dataset again") from None
        missing = [self.ids[k] for k, p in zip(selection, self.positions[selection]) if int(p) not in found]
        if missing:
            raise CorruptShardError(f"{len(missing)} record(s) ({missing[0]} ...) are missing from the shards of "
                                    f"{self.path}")
        return [found[int(p)] for p in self.positions[selection]]

    def _pipeline(self, selection: np.ndarray, batch_size: int, input_context) -> tuple[list[int], int]:
        """The shards one input pipeline reads (by file) and its batch size."""
        shards = sorted(set(self.record_shards[selection].tolist()))
        if input_context is None:
            return shards, int(batch_size)
        pipeline, n_pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
        return shards[pipeline::n_pipelines], int(input_context.get_per_replica_batch_size(batch_size))

    def batches_per_epoch(self, indices: Sequence[int] | None = None, batch_size: int = 32, input_context=None,
                          bucket_boundaries: Sequence[int] | None = None, drop_remainder: bool = False) -> int:
        """The exact number of batches one epoch of :meth:`stream` yields (same arguments).

        Bucketing yields one partial batch per bucket, so this is
        ``sum over buckets of ceil(n_bucket / batch_size)``, counted over the
        records this input pipeline reads. It does not depend on the shuffle.
        Under ``input_context`` pipelines read different shards, hence may count
        different numbers: for a multi-worker ``fit``, stream with ``epochs=None``
        (repeat forever) and use ``steps_per_epoch = min`` over the pipelines
        (:meth:`steps_per_epoch`), so that no worker runs out.
        """
        selection = self._selection(indices)
        shards, per_batch = self._pipeline(selection, batch_size, input_context)
        mine = selection[np.isin(self.record_shards[selection], shards)]
        sizes = self.sizes[mine]
        boundaries = self._boundaries(selection, batch_size, bucket_boundaries)
        buckets = np.searchsorted(np.asarray(boundaries, dtype=np.int64), sizes, side="right")
        if drop_remainder:
            return int(sum(int(n) // per_batch for n in np.bincount(buckets)))
        return int(sum(-(-int(n) // per_batch) for n in np.bincount(buckets) if n))

    def steps_per_epoch(self, indices: Sequence[int] | None = None, batch_size: int = 32,
                        num_input_pipelines: int = 1, num_replicas_in_sync: int = 1,
                        bucket_boundaries: Sequence[int] | None = None, drop_remainder: bool = False) -> int:
        """The fewest batches any of ``num_input_pipelines`` pipelines yields per epoch (see batches_per_epoch)."""
        contexts = [tf.distribute.InputContext(num_input_pipelines, k, num_replicas_in_sync)
                    for k in range(num_input_pipelines)]
        return min(self.batches_per_epoch(indices, batch_size, c, bucket_boundaries, drop_remainder)
                   for c in contexts)

    def _boundaries(self, selection: np.ndarray, batch_size: int, bucket_boundaries) -> list[int]:
        if self.schema.size_group is None:
            return []
        if bucket_boundaries is None:
            return default_bucket_boundaries(self.sizes[selection], batch_size) if len(selection) else []
        boundaries = [int(b) for b in bucket_boundaries]
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])) or any(b <= 0 for b in boundaries):
            raise ValueError(f"bucket_boundaries must be positive and strictly increasing, got {boundaries}")
        return boundaries

    def stream(
        self,
        indices: Sequence[int] | None = None,
        targets: np.ndarray | None = None,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        epochs: int | None = 1,
        buffer_size: int = 4096,
        input_context: tf.distribute.InputContext | None = None,
        bucket_boundaries: Sequence[int] | None = None,
        with_positions: bool = False,
        cycle_length: int = 4,
        first_epoch: int = 0,
        known_cardinality: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of padded, size-bucketed batches ``(inputs, y[B, 1])`` (or only inputs).

        Shard files are interleaved (shuffled per epoch when ``shuffle``), records
        parsed and kept when their index is in ``indices``, shuffled in a buffer,
        bucketed by the schema's size group, padded to their group's multiple and
        given their masks: a batch equals :meth:`RecordSchema.pad_batch` of its
        records.

        The dataset holds the passes ``first_epoch .. epochs - 1`` back to back;
        pass ``e`` draws its order from ``seed`` and ``e`` alone, so it is
        deterministic, every iterator of the dataset sees the same sequence, and a
        resumed run (``first_epoch``) continues it. With Keras, stream all epochs
        once and give ``fit`` ``steps_per_epoch=batches_per_epoch(...)``: each Keras
        epoch is then exactly one pass.

        Args:
            indices: positions in :attr:`ids` to stream; all for ``None``.
            targets: float targets aligned with ``indices`` (``targets[k]`` is the
                target of ``indices[k]``), or ``None`` to yield inputs only.
            batch_size: the global batch size (per replica under ``input_context``:
                ``input_context.get_per_replica_batch_size(batch_size)``).
            shuffle: shuffle file order and records (buffer of ``buffer_size``) each epoch.
            seed: the shuffle seed.
            epochs: the number of passes (ending before pass ``epochs``); ``None`` repeats forever.
            buffer_size: records in the shuffle buffer.
            input_context: a ``tf.distribute.InputContext``: read only the shard files
                ``files[input_pipeline_id::num_input_pipelines]``.
            bucket_boundaries: size-bucket boundaries; by default the quantiles of the
                selected sizes (:func:`default_bucket_boundaries`).
            with_positions: add ``"position"`` (int64 ``[B]``, the records' positions) to the
                inputs. Bucketing reorders records: to predict, iterate the batches, pop
                ``"position"`` and match the model's outputs by it.
            cycle_length: shard files read at once.
            first_epoch: the first pass (to resume a run).
            known_cardinality: give the dataset its (exact) number of batches, e.g.
                for ``model.predict``; off by default, as for the other pipelines
                (Keras reads a known cardinality of a distributed dataset per replica).
            drop_remainder: full batches only (each bucket's last, partial batch of a pass is dropped: the
                workers of a multi-worker step then average equal batches).

        Returns:
            The dataset; one epoch has :meth:`batches_per_epoch` batches.
        """
        selection = self._selection(indices)
        shards, per_batch = self._pipeline(selection, batch_size, input_context)
        self.check_sizes(shards)
        boundaries = self._boundaries(selection, batch_size, bucket_boundaries)
        one_pass = self._one_pass_function(selection, shards, targets, per_batch, boundaries, shuffle, seed,
                                           buffer_size, with_positions, cycle_length, drop_remainder)
        stop = np.iinfo(np.int64).max if epochs is None else int(epochs)
        dataset = tf.data.Dataset.range(int(first_epoch), stop).flat_map(one_pass)
        if known_cardinality and epochs is not None:
            n_batches = self.batches_per_epoch(selection, batch_size, input_context, boundaries, drop_remainder)
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches * max(stop - first_epoch, 0)))
        options = tf.data.Options()
        options.deterministic = True
        if input_context is not None:  # already sharded by file
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    def _one_pass_function(self, selection, shards, targets, batch_size, boundaries, shuffle, seed, buffer_size,
                           with_positions, cycle_length, drop_remainder) -> Callable[[tf.Tensor], tf.data.Dataset]:
        """epoch -> the batches of that pass (its shuffle seeded by ``seed`` and the epoch)."""
        keep = np.zeros(self.n_entries, dtype=bool)
        keep[self.positions[selection]] = True
        targets_by_position = self._targets_by_position(selection, targets)
        finish = _finish_function(self.schema, with_positions, targets is not None)

        def one_pass(epoch):
            dataset = self._parsed(shards, keep, targets_by_position, shuffle, seed + 7919 * epoch, buffer_size,
                                   cycle_length)
            dataset = self._batched(dataset, batch_size, boundaries, drop_remainder)
            return dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        return one_pass

    def _targets_by_position(self, selection: np.ndarray, targets) -> np.ndarray | None:
        """float32 ``[n_entries]``: ``targets[k]`` at the position of ``selection[k]`` (``None`` for none)."""
        if targets is None:
            return None
        values = np.asarray(targets, dtype=np.float32).reshape(-1)
        if len(values) != len(selection):
            raise ValueError(f"{len(values)} targets for {len(selection)} indices")
        by_position = np.zeros(self.n_entries, dtype=np.float32)
        by_position[self.positions[selection]] = values
        return by_position

    def _parsed(self, shards: list[int], keep: np.ndarray, targets_by_position: np.ndarray | None, shuffle: bool,
                seed: tf.Tensor, buffer_size: int, cycle_length: int) -> tf.data.Dataset:
        """The kept records of ``shards``: files interleaved, records shuffled (serialised: cheap), then parsed.

        The shuffles are stateless, keyed by the pass's ``seed`` tensor: the file order is a permutation, the
        records are shuffled in blocks of ``buffer_size`` (each record gets a random key from ``seed`` and its
        position; a block is sorted by key). tf.data's own ``shuffle`` cannot take a tensor seed inside a traced
        pass when the global seed is 0 (``random_seed.get_seed`` compares it as a Python bool).
        """
        files = tf.constant([str(self.shard_files[j]) for j in shards], dtype=tf.string)
        if shuffle:
            files = tf.random.experimental.stateless_shuffle(files, seed=tf.stack([tf.cast(seed, tf.int64), 0]))
        dataset = tf.data.Dataset.from_tensor_slices(files)
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(cycle_length, len(shards))),
                                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        keep_t = tf.constant(keep)
        dataset = dataset.map(lambda serialized: (serialized, tf.gather(keep_t, _parse_position(serialized))),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.filter(lambda serialized, kept: kept).map(lambda serialized, kept: serialized)
        if shuffle:
            dataset = _block_shuffled(dataset, buffer_size, tf.cast(seed, tf.int64) + 1)
        return dataset.map(_parse_function(self.schema, targets_by_position), num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)

    def _batched(self, dataset: tf.data.Dataset, batch_size: int, boundaries: list[int],
                 drop_remainder: bool = False) -> tf.data.Dataset:
        """Padded batches, bucketed by the size group's length when there are boundaries."""
        if not boundaries:
            return dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
        group = self.schema.size_group
        return dataset.bucket_by_sequence_length(
            lambda element: tf.cast(element["n"][group], tf.int32), boundaries,
            [batch_size] * (len(boundaries) + 1), drop_remainder=drop_remainder)


def _byte_count(value: object) -> int:
    """A shard's recorded byte count: a non-negative int (else the manifest is garbled)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a shard's bytes is {value!r}, not a byte count")
    return value


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def _features(schema: RecordSchema) -> dict:
    """The tf.io features of a serialised record (``id`` is not read back)."""
    features = {"position": tf.io.FixedLenFeature([], tf.int64)}
    features.update({f"n:{g}": tf.io.FixedLenFeature([], tf.int64) for g in schema.groups})
    features.update({f"f:{name}": tf.io.FixedLenFeature([], tf.string) for name in schema.fields})
    return features


def _block_shuffled(dataset: tf.data.Dataset, block: int, seed: tf.Tensor) -> tf.data.Dataset:
    """Serialised records shuffled in consecutive blocks of ``block``, by stateless keys from ``seed`` and each
    record's position (the same ``seed`` gives the same order)."""
    def keyed(serialized):
        key = tf.random.stateless_uniform([], seed=tf.stack([seed, _parse_position(serialized)]), dtype=tf.float32)
        return key, serialized

    def sorted_block(keys, serialized):
        return tf.gather(serialized, tf.argsort(keys))

    dataset = dataset.map(keyed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(max(int(block), 1)).map(sorted_block).unbatch()


def _parse_position(serialized: tf.Tensor) -> tf.Tensor:
    return tf.io.parse_single_example(serialized, {"position": tf.io.FixedLenFeature([], tf.int64)})["position"]


def _shard_records(path: Path, schema: RecordSchema, wanted: set[int]) -> dict[int, dict[str, np.ndarray]]:
    """position -> record (NumPy, stored dtypes) of the records of one shard whose position is in ``wanted``."""
    features = _features(schema)
    found = {}
    for chunk in tf.data.TFRecordDataset(str(path)).batch(1024):
        parsed = {key: value.numpy() for key, value in tf.io.parse_example(chunk, features).items()}
        for k, position in enumerate(parsed["position"].tolist()):
            if position not in wanted:
                continue
            record = {}
            for name, spec in schema.fields.items():
                shape = spec.shape if spec.group is None else (int(parsed[f"n:{spec.group}"][k]), *spec.shape)
                flat = np.frombuffer(parsed[f"f:{name}"][k], dtype=np.dtype(spec.dtype).newbyteorder("<"))
                record[name] = flat.reshape(shape).astype(spec.dtype)
            found[position] = record
    return found


def _parse_function(schema: RecordSchema, target_by_position: np.ndarray | None = None) -> Callable:
    """serialised record -> {"fields" (feed dtypes), "n", "position"(, "y")}, for streaming."""
    features = _features(schema)
    target_t = None if target_by_position is None else tf.constant(target_by_position)

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, features)
        fields = {}
        for name, spec in schema.fields.items():
            flat = tf.io.decode_raw(example[f"f:{name}"], tf.as_dtype(spec.dtype), little_endian=True)
            shape = list(spec.shape) if spec.group is None else [example[f"n:{spec.group}"], *spec.shape]
            value = tf.reshape(flat, tf.cast(shape, tf.int64) if shape else [])
            fields[name] = tf.cast(value, tf.as_dtype(spec.feed_dtype))
        position = example["position"]
        out = {"fields": fields, "n": {g: example[f"n:{g}"] for g in schema.groups}, "position": position}
        if target_t is not None:
            out["y"] = tf.gather(target_t, position)
        return out

    return parse


def _finish_function(schema: RecordSchema, with_positions: bool, with_targets: bool) -> Callable:
    """A padded batch -> (inputs, y[B, 1]) or inputs: ragged groups padded to their multiple, masks added."""
    specs = schema.tensor_spec()

    def finish(batch):
        lengths = {}
        for group in schema.groups:
            multiple = schema.multiple(group)
            longest = tf.maximum(tf.reduce_max(batch["n"][group]), 1)
            lengths[group] = tf.cast((longest + multiple - 1) // multiple * multiple, tf.int32)
        inputs = {}
        for name, spec in schema.fields.items():
            value = batch["fields"][name]
            if spec.group is not None:
                extra = lengths[spec.group] - tf.shape(value)[1]
                value = tf.pad(value, [[0, 0], [0, extra]] + [[0, 0]] * len(spec.shape))
            inputs[name] = tf.ensure_shape(value, specs[name].shape)
        for name, group in schema.masks.items():
            inputs[name] = tf.sequence_mask(batch["n"][group], lengths[group], dtype=tf.float32)
        if with_positions:
            inputs["position"] = batch["position"]
        return (inputs, batch["y"][:, None]) if with_targets else inputs

    return finish
