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
