"""The package's padded batch layout, and size bucketing.

Every model in atomsets-tf takes dense tensors with a leading batch axis, so
that ``tf.distribute`` can split a global batch across replicas:

* per-atom arrays are padded to ``[batch, n_atoms_max, ...]``; the per-atom
  ``weights`` ``[batch, n_atoms_max]`` are the atom fractions (or site
  occupancies) and are **0 on padding rows**;
* per-bond arrays (graph models) are padded to ``[batch, n_bonds_max, ...]``
  with a bond mask, and their atom indices are local to each graph.

Batches are bucketed by size (``size_bucketed_batches``) so that a batch only
holds examples of similar size, and the padded length is rounded up
(``padded_length``) so that only a few distinct shapes reach ``tf.function``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def padded_length(n: int, multiple: int = 8) -> int:
    """Round ``n`` up to a multiple of ``multiple`` (at least ``multiple``)."""
    n = max(int(n), 1)
    return ((n + multiple - 1) // multiple) * multiple


def pad_stack(
    arrays: Sequence[np.ndarray],
    length: int | None = None,
    value: float | int = 0,
    dtype: np.dtype | str | None = None,
) -> np.ndarray:
    """Stack arrays of different lengths along a new batch axis, padding axis 0.

    Args:
        arrays: ``k`` arrays of shape ``(n_i, *rest)`` with the same ``rest``.
        length: padded length; defaults to ``max(n_i)``.
        value: fill value of the padding rows.
        dtype: output dtype; defaults to the first array's.

    Returns:
        An array of shape ``(k, length, *rest)``.
    """
    if not arrays:
        raise ValueError("pad_stack needs at least one array")
    first = np.asarray(arrays[0])
    rest = first.shape[1:]
    n_max = max(len(a) for a in arrays)
    length = n_max if length is None else int(length)
    if length < n_max:
        raise ValueError(f"padded length {length} is shorter than the longest array ({n_max})")
    out = np.full((len(arrays), length, *rest), value, dtype=dtype or first.dtype)
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.shape[1:] != rest:
            raise ValueError(f"array {i} has trailing shape {a.shape[1:]}, expected {rest}")
        out[i, : len(a)] = a
    return out


def size_bucketed_batches(
    sizes: Sequence[int],
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> list[np.ndarray]:
    """Split example indices into batches of similar size.

    Examples are ordered by size (ties broken at random when shuffling) and cut
    into consecutive batches of ``batch_size``; the batch order is shuffled when
    ``shuffle`` is set. Every index appears exactly once (unless
    ``drop_remainder`` drops the last, short batch).

    Args:
        sizes: size of each example (atoms, or bonds for graphs).
        batch_size: examples per batch (the global batch under tf.distribute).
        shuffle: shuffle tie order and batch order.
        seed: seed of the shuffle.
        drop_remainder: drop a final batch shorter than ``batch_size``.

    Returns:
        A list of int64 index arrays.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    sizes = np.asarray(sizes)
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(sizes)) if shuffle else np.arange(len(sizes))
    order = np.lexsort((tiebreak, sizes))
    batches = [order[i : i + batch_size].astype(np.int64) for i in range(0, len(order), batch_size)]
    if drop_remainder and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def cost_planned_batches(
    sizes: Sequence[int],
    max_rows: int,
    max_padded: int | None = None,
    call_cost: float = 2048.0,
    multiple: int = 8,
) -> list[np.ndarray]:
    """Batches of example indices that minimise padded work plus a fixed cost per batch.

    Examples are ordered by size (ties by index) and cut into consecutive
    batches; the cut points minimise ``sum over batches of (rows x padded
    length) + call_cost x number of batches`` (dynamic programming), under at
    most ``max_rows`` rows and ``max_padded`` padded entries per batch (a single
    example longer than ``max_padded`` gets a batch of its own). With
    ``call_cost = 0`` this is the least padding; a large ``call_cost`` gives
    few, full batches. It is deterministic: the same sizes give the same batches.

    Args:
        sizes: size of each example (bonds, for graphs).
        max_rows: most examples in one batch.
        max_padded: most padded entries (rows x padded length) in one batch; ``None``: no cap.
        call_cost: the fixed cost of one batch, in padded entries (e.g. the run time
            of one network call divided by the time per padded bond).
        multiple: padded lengths are rounded up to a multiple of this (see :func:`padded_length`).

    Returns:
        A list of int64 index arrays, in ascending order of size; every index appears once.

    Example:

    >>> [b.tolist() for b in cost_planned_batches([1, 100, 2, 101, 3], max_rows=4, call_cost=16)]
    [[0, 2, 4], [1, 3]]
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    order = np.argsort(np.asarray(sizes, dtype=np.int64), kind="stable")
    n = len(order)
    sorted_sizes = np.asarray(sizes, dtype=np.int64)[order]
    lengths = ((np.maximum(sorted_sizes, 1) + multiple - 1) // multiple) * multiple
    best = np.zeros(n + 1, dtype=np.float64)
    start = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        length = int(lengths[end - 1])
        rows = max_rows if max_padded is None else max(1, min(max_rows, int(max_padded) // length))
        first = max(0, end - rows)
        cost = best[first:end] + (end - np.arange(first, end)) * float(length)
        j = int(np.argmin(cost))
        best[end] = cost[j] + float(call_cost)
        start[end] = first + j
    batches = []
    end = n
    while end > 0:
        batches.append(order[start[end] : end].astype(np.int64))
        end = int(start[end])
    return batches[::-1]
