"""Weighted sets → padded, size-bucketed ``tf.data`` pipelines.

A *weighted set* is one example: per-atom inputs (atomic numbers ``(n,)`` or
features ``(n, d)``) and per-atom weights ``(n,)``. The pipeline yields
``({"atoms" | "features": [B, N(, d)], "weights": [B, N]}, y [B, 1])`` with
``N`` the batch's padded length (see :mod:`atomsets_tf.data.padding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.elements import ElementTable
from atomsets_tf.data.padding import pad_stack, padded_length, size_bucketed_batches
from atomsets_tf.errors import AtomSetsError, EmptyStructureError


@dataclass
class WeightedSets:
    """Examples as weighted sets.

    Attributes:
        values: per example, int32 ``(n_i,)`` atomic numbers or float32
            ``(n_i, d)`` features.
        weights: per example, float32 ``(n_i,)``.
    """

    values: list[np.ndarray]
    weights: list[np.ndarray]

    @property
    def is_features(self) -> bool:
        return self.values[0].ndim == 2

    @property
    def input_name(self) -> str:
        return "features" if self.is_features else "atoms"

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, indices) -> WeightedSets:
        return WeightedSets([self.values[i] for i in indices], [self.weights[i] for i in indices])

    def sizes(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)

    def tensor_spec(self) -> dict:
        """``tf.TensorSpec`` of each input of a padded batch (batch and atom axes unknown)."""
        values = (
            tf.TensorSpec((None, None, self.values[0].shape[1]), tf.float32)
            if self.is_features
            else tf.TensorSpec((None, None), tf.int32)
        )
        return {self.input_name: values, "weights": tf.TensorSpec((None, None), tf.float32)}

    def padded(self, indices, pad_multiple: int = 8) -> dict[str, np.ndarray]:
        """The examples at ``indices`` as one padded batch."""
        n = padded_length(max(len(self.values[i]) for i in indices), pad_multiple)
        values = pad_stack([self.values[i] for i in indices], n, dtype=np.float32 if self.is_features else np.int32)
        weights = pad_stack([self.weights[i] for i in indices], n, dtype=np.float32)
        return {self.input_name: values, "weights": weights}


def compositions_to_sets(
    formulas: Sequence, ids: Sequence[str] | None = None, element_table: ElementTable | None = None
) -> WeightedSets:
    """Compositions as weighted sets of atomic numbers, weighted by atom fraction.

    Raises:
        CompositionParseError / EmptyStructureError: naming the entry.
        UnknownElementError: an element missing from ``element_table``.
    """
    values, weights = [], []
    for k, formula in enumerate(formulas):
        entry = f"{ids[k]} ({formula})" if ids is not None else repr(formula)
        try:
            zs, fracs = composition_to_set(formula)
            if element_table is not None:
                element_table.check(zs, entry)
        except AtomSetsError as exc:
            if ids is not None and ids[k] not in str(exc):
                raise type(exc)(f"{ids[k]}: {exc}") from None
            raise
        values.append(zs)
        weights.append(fracs)
    return WeightedSets(values, weights)


def structures_to_sets(structures: Sequence) -> WeightedSets:
    """Structures as weighted sets of atomic numbers, one row per site.

    A disordered site contributes one row per species, weighted by occupancy.
    """
    values, weights = [], []
    for s in structures:
        zs, ws = [], []
        for site in s:
            for sp, occ in site.species.items():
                zs.append(sp.Z)
                ws.append(occ)
        if not zs:
            raise EmptyStructureError("structure has no sites")
        values.append(np.asarray(zs, dtype=np.int32))
        weights.append(np.asarray(ws, dtype=np.float32))
    return WeightedSets(values, weights)


def batch_indices(
    sets, batch_size: int, shuffle: bool = False, seed: int = 0, dense: bool = False
) -> list[np.ndarray]:
    """Index arrays of the batches of one pass: size-bucketed, or in (shuffled) order when ``dense``."""
    if not dense:
        return size_bucketed_batches(sets.sizes(), batch_size, shuffle=shuffle, seed=seed)
    order = np.random.default_rng(seed).permutation(len(sets)) if shuffle else np.arange(len(sets))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def n_batches(n_examples: int, batch_size: int) -> int:
    """Batches in one pass over ``n_examples`` (the last one may be short)."""
    return -(-n_examples // batch_size)


def make_dataset(
    sets,
    targets: np.ndarray | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    epochs: int = 1,
    first_epoch: int = 0,
    pad_multiple: int = 8,
    dense_limit: int = 32,
    position_source=None,
    first_step: int = 0,
    pipelines: int = 1,
):
    """A ``tf.data.Dataset`` of padded batches ``(inputs, y)`` (or only inputs).

    ``sets`` is any collection of examples with the interface of
    :class:`WeightedSets`: ``len()``, ``sizes()``, ``padded(indices,
    pad_multiple)`` and ``tensor_spec()`` (graphs implement it too).

    Batches are bucketed by size and padded to their own longest example. When
    no example has more than ``dense_limit`` atoms (compositions, small cells),
    bucketing saves nothing worth its cost: every example is padded to one
    length and batches are drawn in random order.

    The dataset holds the passes ``first_epoch .. epochs - 1`` back to back
    (``n_batches`` batches each; train with ``steps_per_epoch=n_batches(...)``),
    less the first ``first_step`` batches of pass ``first_epoch`` (a run resumed
    mid-epoch sees exactly the batches of that pass it had not seen, in order).
    With ``shuffle``, pass ``e`` draws its order from NumPy with ``seed`` and
    ``e``, so a run is reproducible, a resumed run continues the same sequence,
    and every ``tf.distribute`` strategy sees the same batches (tf.data's own
    shuffle is reseeded when a dataset is distributed). Batches are along axis
    0, so ``tf.distribute`` can split them.

    ``position_source``, a callable returning ``(epochs completed, batches done
    of the next epoch)`` so far (:meth:`~atomsets_tf.training.callbacks.BatchCounter.position`),
    overrides ``first_epoch`` / ``first_step`` and makes the dataset safe to
    re-iterate: an iterator created midway (Keras does so at each epoch under a
    ``MirroredStrategy``) starts at the right batch instead of replaying the
    first epoch. (A streamed collection reads it once, when the dataset is made.)

    ``targets`` is ``(n,)``, or ``(n, 1 + K)``: the target and K per-example weights (an ensemble's
    bootstrap multiplicities, read by :class:`~atomsets_tf.training.losses.EnsembleLoss`).

    A collection that streams from disk (``sets.streams``, a prepared dataset's
    :class:`~atomsets_tf.data.streaming.StreamingSets`) is streamed by tf.data
    instead: endless passes, each reshuffled in a bounded buffer and bucketed
    by size inside it; with ``pipelines`` > 1, each batch joins one batch of each of that many input pipelines, as
    the workers of a multi-worker run read them (:meth:`~atomsets_tf.data.streaming.StreamingSets.stream`).
    """
    position = (lambda: (first_epoch, first_step)) if position_source is None else position_source
    if getattr(sets, "streams", False):
        start, skip = (int(k) for k in position())
        # A pass is deterministic: skipping its first batches leaves exactly those not yet seen.
        return sets.stream(targets, batch_size, shuffle=shuffle, seed=seed, first_epoch=start,
                           pipelines=pipelines).skip(skip)
    dense = int(sets.sizes().max()) <= dense_limit
    everything = sets.padded(np.arange(len(sets)), pad_multiple) if dense else None
    y = None if targets is None else np.asarray(targets, dtype=np.float32)
    y = y if y is None or y.ndim == 2 else y[:, None]  # 2-D: the target, then per-example weights of a loss
    x_spec = sets.tensor_spec()
    spec = x_spec if targets is None else (x_spec, tf.TensorSpec((None, y.shape[1]), tf.float32))

    def one_pass(epoch, skip):
        for idx in batch_indices(sets, batch_size, shuffle, seed + 7919 * int(epoch), dense)[skip:]:
            x = {k: v[idx] for k, v in everything.items()} if dense else sets.padded(idx, pad_multiple)
            yield x if y is None else (x, y[idx])

    def generator():
        start, skip = (int(k) for k in position())
        for epoch in range(start, epochs):
            yield from one_pass(epoch, skip if epoch == start else 0)

    # The cardinality stays unknown on purpose: Keras 3 reads a known one of a
    # distributed dataset per replica and would restart the iterator midway.
    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
    return _shard_by_data(dataset).prefetch(2)


def _shard_by_data(dataset):
    """Under multi-worker training, shard by batch content (there are no files to shard by)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
