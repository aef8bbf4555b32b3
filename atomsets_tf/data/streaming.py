"""A prepared dataset's examples as a padded-examples collection that trains by streaming from its shards.

:class:`StreamingSets` has the interface of :class:`~atomsets_tf.data.pipeline.WeightedSets` (``len()``,
``sizes()``, ``subset()``, ``padded()``, ``tensor_spec()``), so the training engine takes it where it takes
examples held in memory:

* :func:`~atomsets_tf.data.pipeline.make_dataset` streams it: shards read interleaved, shuffled in a bounded
  buffer, bucketed by size inside the buffer, padded and prefetched by tf.data
  (:meth:`~atomsets_tf.data.prepared.PreparedDataset.stream`); under ``MultiWorkerMirroredStrategy`` each worker
  reads its own shards (:meth:`StreamingSets.dataset_fn`);
* predictions (:meth:`StreamingSets.prediction_batches`) stream too, each batch with the indices of its examples,
  so memory stays flat for validation and test sets of any size; random access (``padded``) reads the selected
  records into memory once.

A table read from a prepared dataset streams when it has more than :func:`stream_threshold` entries
(the training setting ``stream_above``, default 200,000); smaller ones are read into memory and train exactly as
the data file they were prepared from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import tensorflow as tf

#: Tables of prepared datasets with more entries than this stream (``stream_above`` of ``None``).
DEFAULT_STREAM_ABOVE = 200_000
#: Examples in the shuffle buffer of a streamed pass (bucketing by size happens inside it).
SHUFFLE_BUFFER = 8192


def stream_threshold(stream_above: int | None = None) -> int:
    """Entries above which a prepared table streams: ``stream_above``, or (``None``) :data:`DEFAULT_STREAM_ABOVE`."""
    return DEFAULT_STREAM_ABOVE if stream_above is None else int(stream_above)


class StreamingSets:
    """Examples of a prepared dataset, read from its shards.

    Args:
        dataset: the :class:`~atomsets_tf.data.prepared.PreparedDataset`.
        positions: which of its examples (positions in ``dataset.ids``), in this order.
        to_sets: the family's conversion of records into its in-memory collection (used for random access).
    """

    streams = True

    def __init__(self, dataset, positions: Sequence[int], to_sets: Callable[[list], object]) -> None:
        self.dataset = dataset
        self.positions = np.asarray(positions, dtype=np.int64)
        self.to_sets = to_sets
        self._memory = None

    def __len__(self) -> int:
        return len(self.positions)

    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes, dtype=np.int64)[self.positions]

    def subset(self, indices) -> StreamingSets:
        return StreamingSets(self.dataset, self.positions[np.asarray(indices, dtype=np.int64)], self.to_sets)

    def tensor_spec(self) -> dict:
        return self.dataset.schema.tensor_spec()

    def in_memory(self):
        """The examples read into the family's in-memory collection (once)."""
        if self._memory is None:
            self._memory = self.to_sets(self.dataset.records(self.positions))
        return self._memory

    def padded(self, indices, pad_multiple: int = 8) -> dict[str, np.ndarray]:
        return self.in_memory().padded(indices, pad_multiple)

    def stream(self, targets: np.ndarray | None, batch_size: int, shuffle: bool = False, seed: int = 0,
               input_context=None, first_epoch: int = 0, pipelines: int = 1):
        """Endless padded batches ``(inputs, y)`` of these examples (``targets`` in their order), full batches only.

        Every pass is reshuffled (pass ``e`` seeded by ``seed`` and ``e``, from ``first_epoch`` on).
        ``input_context`` (``tf.distribute.InputContext``) selects the shards of one input pipeline. Outside
        one, with ``pipelines`` > 1, each batch joins one batch of each of that many pipelines (what the workers
        of a multi-worker run train on at one step: one process reproduces their run).
        """
        targets = None if targets is None else np.asarray(targets, np.float32)
        n = int(pipelines) if input_context is None else 1
        if n == 1:
            return self._stream(targets, batch_size, shuffle, seed, input_context, first_epoch)
        parts = [self._stream(targets, batch_size, shuffle, seed, tf.distribute.InputContext(n, k, n), first_epoch)
                 for k in range(n)]
        return tf.data.Dataset.zip(tuple(parts)).map(self._joiner(targets is not None)).prefetch(2)

    def _stream(self, targets, batch_size: int, shuffle: bool, seed: int, input_context, first_epoch: int):
        return self.dataset.stream(self.positions, targets, batch_size, shuffle=shuffle, seed=seed, epochs=None,
                                   buffer_size=SHUFFLE_BUFFER, input_context=input_context,
                                   first_epoch=first_epoch, drop_remainder=True)

    def _joiner(self, with_targets: bool):
        """Joins batches along the batch axis, padding the ragged axis of each input to the longest."""
        schema = self.dataset.schema
        ragged = {name for name, spec in schema.fields.items() if spec.group is not None} | set(schema.masks)

        def join(*batches):
            inputs = [b[0] if with_targets else b for b in batches]
            out = {}
            for key in inputs[0]:
                values = [x[key] for x in inputs]
                if key in ragged:
                    n = tf.reduce_max(tf.stack([tf.shape(v)[1] for v in values]))
                    values = [tf.pad(v, [[0, 0], [0, n - tf.shape(v)[1]]] + [[0, 0]] * (len(v.shape) - 2))
                              for v in values]
                out[key] = tf.concat(values, axis=0)
            return (out, tf.concat([b[1] for b in batches], axis=0)) if with_targets else out

        return join

    def steps_per_epoch(self, batch_size: int, num_input_pipelines: int = 1, num_replicas_in_sync: int = 1,
                        pipelines: int = 1) -> int:
        """Full batches in one streamed pass (the fewest of any input pipeline, so that no worker runs out);
        ``pipelines`` > 1 in one input pipeline: of the passes :meth:`stream` joins from that many."""
        if num_input_pipelines == 1 and pipelines > 1:
            num_input_pipelines = num_replicas_in_sync = int(pipelines)
        return self.dataset.steps_per_epoch(self.positions, batch_size, num_input_pipelines, num_replicas_in_sync,
                                            drop_remainder=True)

    def prediction_batches(self, batch_size: int):
        """``(indices, inputs)`` for every batch of one pass, in no particular order (``indices``: int64 positions
        in this collection of the batch's examples)."""
        local = np.full(self.dataset.n_entries, -1, dtype=np.int64)
        local[np.asarray(self.dataset.positions)[self.positions]] = np.arange(len(self.positions))
        with self.reading():
            for inputs in self.dataset.stream(self.positions, None, batch_size, with_positions=True):
                position = inputs.pop("position").numpy()
                yield local[position], inputs

    @contextmanager
    def reading(self):
        """Turns a corrupt record met while streaming (``tf.errors.DataLossError``, which names no file) into
        :class:`~atomsets_tf.errors.CorruptShardError` naming the shard."""
        try:
            yield
        except tf.errors.DataLossError as exc:
            raise self.dataset.data_loss_error(exc) from None

    def dataset_fn(self, targets: np.ndarray | None, batch_size: int, shuffle: bool = False, seed: int = 0,
                   first_epoch: int = 0):
        """For ``strategy.distribute_datasets_from_function``: each input pipeline reads its own shards."""
        return lambda input_context: self.stream(targets, batch_size, shuffle, seed, input_context, first_epoch)
