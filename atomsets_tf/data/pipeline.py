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

from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.elements import ElementTable
from atomsets_tf.data.padding import pad_stack, padded_length, size_bucketed_batches
from atomsets_tf.errors import AtomSetsError


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
    from atomsets_tf.errors import EmptyStructureError

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


def batches(
    sets: WeightedSets,
    targets: np.ndarray | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pad_multiple: int = 8,
):
    """Yield padded batches ``(inputs, y)`` (``y`` float32 ``[B, 1]``, or only inputs)."""
    for idx in size_bucketed_batches(sets.sizes(), batch_size, shuffle=shuffle, seed=seed):
        x = sets.padded(idx, pad_multiple)
        if targets is None:
            yield x
        else:
            yield x, np.asarray(targets, dtype=np.float32)[idx, None]


def make_dataset(
    sets: WeightedSets,
    targets: np.ndarray | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pad_multiple: int = 8,
    dense_limit: int = 32,
):
    """A ``tf.data.Dataset`` of padded, size-bucketed batches.

    With ``shuffle``, each pass over the dataset (each epoch) draws a new
    bucketing and batch order from ``seed`` and the epoch number, so runs are
    reproducible. Batches are along axis 0, so ``tf.distribute`` can split them.

    When no example has more than ``dense_limit`` atoms (compositions, small
    cells), bucketing saves nothing worth its cost: every example is padded to
    one length and tf.data shuffles and batches in-graph, which is faster.
    """
    import tensorflow as tf

    sizes = sets.sizes()
    if sizes.max() <= dense_limit:
        return _dense_dataset(sets, targets, batch_size, shuffle, seed, pad_multiple)
    name = sets.input_name
    value_spec = (
        tf.TensorSpec((None, None, sets.values[0].shape[1]), tf.float32)
        if sets.is_features
        else tf.TensorSpec((None, None), tf.int32)
    )
    x_spec = {name: value_spec, "weights": tf.TensorSpec((None, None), tf.float32)}
    spec = x_spec if targets is None else (x_spec, tf.TensorSpec((None, 1), tf.float32))
    epoch = [0]

    def generator():
        this_seed = seed + 7919 * epoch[0]
        epoch[0] += 1
        yield from batches(sets, targets, batch_size, shuffle=shuffle, seed=this_seed, pad_multiple=pad_multiple)

    n_batches = len(size_bucketed_batches(sizes, batch_size))
    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def _dense_dataset(sets: WeightedSets, targets, batch_size: int, shuffle: bool, seed: int, pad_multiple: int):
    """Small sets (compositions): pad everything to one length and let tf.data shuffle and batch in-graph."""
    import tensorflow as tf

    x = sets.padded(np.arange(len(sets)), pad_multiple)
    elements = x if targets is None else (x, np.asarray(targets, dtype=np.float32)[:, None])
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(sets), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)
