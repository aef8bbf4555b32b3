"""Reading prepared datasets: records built once, then streamed with ``tf.data``.

A prepared dataset (its folder layout and record encoding:
:mod:`atomsets_tf.data.prepared_format`; written by
:func:`~atomsets_tf.data.prepared_writer.prepare_dataset`) is opened, checked
and streamed by :class:`PreparedDataset`: ``stream`` yields padded,
size-bucketed batches whose layout is :meth:`RecordSchema.pad_batch`'s, sharded
by file under ``tf.distribute``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from atomsets_tf.data.prepared_format import FORMAT, VERSION, record_features
from atomsets_tf.data.records import (
    MANIFEST,
    FieldSpec,
    RecordBuilder,
    RecordSchema,
)
from atomsets_tf.errors import CorruptShardError, PreparedDatasetError
from atomsets_tf.utils.io import check_file_size, listed_file
from atomsets_tf.utils.io import sha256_file as file_sha256

__all__ = [
    "FieldSpec",
    "PreparedDataset",
    "RecordBuilder",
    "RecordSchema",
    "default_bucket_boundaries",
]


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
    """A prepared dataset opened for reading (see :func:`~atomsets_tf.data.prepared_writer.prepare_dataset`).

    Attributes:
        path: the dataset folder.
        kind, schema, settings, parent, source: as prepared.
        ids: the ids of the records, in position order.
        positions: int64, each record's position among the entries given to
            :func:`~atomsets_tf.data.prepared_writer.prepare_dataset`.
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
    features = record_features(schema)
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
    features = record_features(schema)
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
