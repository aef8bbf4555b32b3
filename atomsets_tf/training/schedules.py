"""Learning-rate schedules of the training engine, as per-epoch factors of the base learning rate.

* ``constant``: 1.
* ``cyclical``: the triangular cyclical schedule of the CGAT paper: the factor
  rises linearly from ``min_factor`` (0.1 there) to 1 over half a period and
  falls back over the other half; it is ``min_factor`` at epoch 0 (CGAT's
  ``cyclical_lr`` with its default period of 130 epochs).
* ``cosine``: cosine decay from 1 to ``min_factor`` over the run.
"""

from __future__ import annotations

import math

import keras

from atomsets_tf.errors import AtomSetsError

SCHEDULES = ("constant", "cyclical", "cosine")


def lr_factor(schedule: str, epoch: int, epochs: int, period: int = 130, min_factor: float = 0.1) -> float:
    """The learning-rate factor of ``schedule`` at ``epoch`` (0-based) of ``epochs``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cyclical":
        half = period / 2.0
        cycle = math.floor(1 + epoch / period)
        x = abs(epoch / half - 2 * cycle + 1)
        return min_factor + (1.0 - min_factor) * max(0.0, 1.0 - x)
    if schedule == "cosine":
        progress = min(epoch / max(epochs - 1, 1), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise AtomSetsError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def scheduler_callback(schedule: str, base_lr: float, epochs: int, period: int = 130, min_factor: float = 0.1):
    """A Keras ``LearningRateScheduler`` setting ``base_lr * lr_factor(...)`` at the start of each epoch.

    The factor depends only on the epoch number, so a resumed run continues the same schedule.
    """
    lr_factor(schedule, 0, epochs, period, min_factor)  # validates the name
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, _lr: base_lr * lr_factor(schedule, epoch, epochs, period, min_factor)
    )
