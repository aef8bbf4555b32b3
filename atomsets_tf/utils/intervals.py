"""How often the resumable training state is saved: a time or a number of training steps (one parser for all).

``--checkpoint-every`` and ``TrainingConfig.checkpoint_every`` take the same forms (see :data:`INTERVAL_FORMS`):
a bare number is seconds (``30``, ``0.5``), a number with a unit is a time (``30s``, ``10min``, ``2h``), and
``500steps`` counts training batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atomsets_tf.errors import IntervalError

#: The allowed forms, for error messages and help texts.
INTERVAL_FORMS = "a number of seconds (30), a time (30s, 10min, 2h) or a number of training steps (500steps)"
_SECONDS_PER_UNIT = {"": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>s|min|h|steps?)?$")


@dataclass(frozen=True)
class SaveInterval:
    """A least interval between two saves: ``seconds`` of time, or ``steps`` training batches (one of them)."""

    seconds: float | None = None
    steps: int | None = None

    def is_due(self, elapsed_s: float, elapsed_steps: int) -> bool:
        """Whether a save is due ``elapsed_s`` seconds and ``elapsed_steps`` batches after the last one."""
        if self.steps is not None:
            return elapsed_steps >= self.steps
        return elapsed_s >= (self.seconds or 0.0)


def parse_save_interval(value: float | int | str) -> SaveInterval:
    """``value`` (a number of seconds, or a string in one of the :data:`INTERVAL_FORMS`) as a :class:`SaveInterval`.

    Raises:
        IntervalError: ``value`` is negative, a zero step count, or in none of the forms.
    """
    if isinstance(value, bool):
        raise IntervalError(f"checkpoint interval {value!r}: use {INTERVAL_FORMS}")
    if isinstance(value, int | float):
        if not value >= 0:  # also NaN
            raise IntervalError(f"checkpoint interval {value!r} is negative: use {INTERVAL_FORMS}")
        return SaveInterval(seconds=float(value))
    match = _PATTERN.match(str(value).strip().lower())
    if match is None:
        raise IntervalError(f"checkpoint interval {value!r}: use {INTERVAL_FORMS}")
    number, unit = match["number"], match["unit"] or ""
    if unit.startswith("step"):
        if "." in number or int(number) < 1:
            raise IntervalError(f"checkpoint interval {value!r}: a step count is a whole number from 1; use "
                                f"{INTERVAL_FORMS}")
        return SaveInterval(steps=int(number))
    return SaveInterval(seconds=float(number) * _SECONDS_PER_UNIT[unit])
