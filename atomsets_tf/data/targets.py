"""What is known of a target's physics: which targets cannot be negative, and which sit at exactly 0 often.

Free of TensorFlow. :func:`task_output_kind` picks the output a model gets for a table (see
:class:`~atomsets_tf.models.AtomSets`' ``output``): the Matbench task's own metadata when the table is a task,
the user's choice otherwise.

=========================  =====================================================================
output kind                what the model's output is
=========================  =====================================================================
``linear``                 any real number (formation energies, log moduli)
``non-negative``           softplus of the linear output: never below 0 (gaps, moduli, frequencies)
``zero-inflated``          a probability that the target is 0 and a positive magnitude (band gaps,
                           where metals sit at exactly 0)
=========================  =====================================================================
"""

from __future__ import annotations

import numpy as np

from atomsets_tf.errors import DataFormatError

OUTPUT_KINDS = ("linear", "non-negative", "zero-inflated")

#: Matbench v0.1 regression targets that cannot be negative, with the physical reason.
NON_NEGATIVE_TASKS: dict[str, str] = {
    "matbench_steels": "a yield strength",
    "matbench_jdft2d": "an exfoliation energy (a bound layer costs energy to remove)",
    "matbench_phonons": "a phonon frequency (the last peak of the phonon DOS)",
    "matbench_expt_gap": "a band gap",
    "matbench_mp_gap": "a band gap",
    "matbench_dielectric": "a refractive index (at least 1)",
}

#: Of those, the targets that are exactly 0 for a large share of entries (metals have no gap): 53 % of
#: matbench_expt_gap, 43 % of matbench_mp_gap.
ZERO_INFLATED_TASKS: tuple[str, ...] = ("matbench_expt_gap", "matbench_mp_gap")
#: The tasks whose default is the two-part output: where it beat the non-negative one on validation data
#: (BENCHMARKS.md, accuracy section; AtomSets-V0). matbench_mp_gap: validation MAE 0.319 eV against 0.326 eV
#: (official fold 0). On matbench_expt_gap it did not: 0.401 eV against 0.388 eV (5 folds).
ZERO_INFLATED_BY_DEFAULT: tuple[str, ...] = ("matbench_mp_gap",)


def task_output_kind(task: str | None, zero_inflated: bool | None = None) -> str:
    """The output kind a Matbench task's target calls for (``linear`` for an unknown task or a free target).

    Args:
        task: a Matbench task name (``matbench_expt_gap``), or ``None``.
        zero_inflated: whether a task with many exact zeros gets the two-part output (else ``non-negative``);
            ``None``: where it was measured to win (:data:`ZERO_INFLATED_BY_DEFAULT`).
    """
    if zero_inflated is None:
        zero_inflated = task in ZERO_INFLATED_BY_DEFAULT
    if task in ZERO_INFLATED_TASKS and zero_inflated:
        return "zero-inflated"
    return "non-negative" if task in NON_NEGATIVE_TASKS else "linear"


def check_output_kind(kind: str, targets: np.ndarray | None = None, source: str = "the data") -> str:
    """``kind`` after checking that it is an output kind and that ``targets`` allow it.

    Raises:
        DataFormatError: an unknown kind, or a negative target for a ``non-negative`` / ``zero-inflated``
            output (naming the first such entry's position), or no zero and no positive target for
            ``zero-inflated``.
    """
    if kind not in OUTPUT_KINDS:
        raise DataFormatError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
    if targets is None or kind == "linear":
        return kind
    targets = np.asarray(targets, dtype=np.float64)
    negative = np.flatnonzero(targets < 0)
    if len(negative):
        raise DataFormatError(f"{source}: a {kind} output needs targets >= 0, but entry #{int(negative[0])} is "
                              f"{targets[negative[0]]:g} ({len(negative)} negative targets in all)")
    if kind == "zero-inflated" and not ((targets == 0).any() and (targets > 0).any()):
        raise DataFormatError(f"{source}: a zero-inflated output needs both zero and positive targets")
    return kind


def positive_stats(targets: np.ndarray) -> tuple[float, float]:
    """The mean and standard deviation of the positive ``targets``: what a two-part output de-standardises its
    magnitude with (1.0 for a mean without positives, and for a std without two distinct positives)."""
    targets = np.asarray(targets, dtype=np.float64)
    positive = targets[targets > 0]
    mean = float(positive.mean()) if len(positive) else 1.0
    std = (float(positive.std()) or 1.0) if len(positive) > 1 else 1.0
    return mean, std
