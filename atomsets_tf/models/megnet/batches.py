"""The MEGNet batch planner: which graphs share a batch when taps and predictions are run.

:func:`plan_batches` cuts batches of graph indices by bond count, either of a fixed size under a cap on padded bonds
(:data:`MAX_PADDED_BONDS`), or planned by cost (:data:`MAX_BATCH_ROWS`, :data:`CALL_COST_BONDS`). A structure's
taps do not depend on its batch: the plan changes only the speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atomsets_tf.data.padding import cost_planned_batches, padded_length, size_bucketed_batches

__all__ = ["CALL_COST_BONDS", "MAX_BATCH_ROWS", "MAX_PADDED_BONDS", "plan_batches"]

#: Default cap on a batch's padded bond count (batch rows x padded bonds per row).
MAX_PADDED_BONDS = 16384
#: Most structures in one batch when batches are planned by cost (``batch_size=None``).
MAX_BATCH_ROWS = 1024
#: The fixed cost of one network call, in padded bonds, for planning batches by cost: on CPU one call of the
#: published models costs about as much as 2000 padded bonds (~1000 small TensorFlow ops; measured with
#: ``benchmarks/tap_throughput.py --profile``).
CALL_COST_BONDS = 2048


def plan_batches(
    n_bonds: Sequence[int], batch_size: int | None, max_padded_bonds: int | None = MAX_PADDED_BONDS
) -> list[np.ndarray]:
    """Batches of graph indices, bucketed by bond count.

    With an integer ``batch_size``,
    :func:`~atomsets_tf.data.padding.size_bucketed_batches` orders graphs by bond
    count and cuts batches of ``batch_size``; a batch whose rows x padded length
    would exceed ``max_padded_bonds`` is split further (consecutively, by size), so
    a few large structures do not make a whole batch pad to their size.

    With ``batch_size=None`` the batches are planned by cost
    (:func:`~atomsets_tf.data.padding.cost_planned_batches`): up to
    :data:`MAX_BATCH_ROWS` graphs and ``max_padded_bonds`` padded bonds each, cut
    where the padding a cut saves is worth more than one more network call
    (:data:`CALL_COST_BONDS`). A structure's taps do not depend on its batch, so
    this changes only the speed: few, well filled batches.
    """
    if batch_size is None:
        return cost_planned_batches(n_bonds, MAX_BATCH_ROWS, max_padded_bonds, CALL_COST_BONDS)
    out: list[np.ndarray] = []
    for idx in size_bucketed_batches(n_bonds, batch_size):
        if max_padded_bonds is None:
            out.append(idx)
            continue
        cur: list[int] = []
        longest = 0
        for i in idx:
            longest_if = max(longest, int(n_bonds[i]))
            if cur and (len(cur) + 1) * padded_length(longest_if) > max_padded_bonds:
                out.append(np.asarray(cur, dtype=np.int64))
                cur, longest_if = [], int(n_bonds[i])
            cur.append(int(i))
            longest = longest_if
        if cur:
            out.append(np.asarray(cur, dtype=np.int64))
    return out

