"""The one progress mechanism of long work: tqdm bars on stderr (counts, rate, ETA).

A bar is drawn only where someone watches: when it is enabled (``--quiet`` disables every bar) and stderr
is a terminal; in a log file or a pipe it stays silent. Result lines that must stay visible while a bar is
drawn go through :func:`write_line`, which prints them above the bar.

>>> with progress_bar(3, "folds", "fold", enabled=False) as bar:
...     for _ in range(3):
...         bar.update(1)
>>> [x for x in track(range(3), desc="items", enabled=False)]
[0, 1, 2]
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
#: The ``(40 epochs, 12 s)`` at the end of a result line, left out of a bar's postfix.
_TRAILING_PARENTHESIS = re.compile(r"\s*\([^()]*\)\s*$")


def bars_shown(enabled: bool = True) -> bool:
    """Whether a bar would be drawn: ``enabled`` and stderr a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(enabled) and callable(isatty) and bool(isatty())


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar on stderr showing ``done/total unit``, the rate and the ETA; use it as a context manager.

    Args:
        total: the number of steps (``None``: unknown, no ETA).
        desc: the label at the bar's left, e.g. ``"benchmark"``.
        unit: what one step is, e.g. ``"structure"``, ``"fold"``.
        enabled: ``False`` (``--quiet``) gives a silent bar whose methods do nothing.
        initial: steps already done (a resumed job).

    Returns:
        A ``tqdm`` bar: call ``update(n)``, ``set_postfix_str(text)`` and ``close()`` (or use ``with``).
    """
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, dynamic_ncols=True,
                disable=not bars_shown(enabled), leave=True)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over ``iterable`` with a :func:`progress_bar` (``total`` defaults to ``len(iterable)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with progress_bar(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def counter_callback(desc: str, unit: str = "structure", enabled: bool = True) -> Callable[[int, int], None]:
    """A ``report(done, total)`` callback that drives one bar (created at the first call, closed at the total)."""
    state: dict = {}

    def report(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = progress_bar(total, desc, unit, enabled)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            state.pop("bar")

    return report


@contextlib.contextmanager
def reporting_bar(total: int, desc: str, unit: str,
                  report: Callable[[str], None] | None) -> Iterator[Callable[[str], None] | None]:
    """A bar over ``total`` finished items (folds, configurations, points) for a loop that reports each one.

    Yields ``None`` when ``report`` is ``None`` (nothing shown), else a ``report`` that passes each result
    line on, shows it as the bar's postfix (without ``desc`` and the parenthesis at its end) and advances
    the bar by one.
    """
    if report is None:
        yield None
        return
    with progress_bar(total, desc, unit) as bar:

        def step(line: str) -> None:
            report(line)
            bar.set_postfix_str(_TRAILING_PARENTHESIS.sub("", line.removeprefix(desc)).strip(" :"), refresh=False)
            bar.update(1)

        yield step


def write_line(line: str) -> None:
    """Print a result line on stdout, above any bar being drawn (so the bar is not torn)."""
    tqdm.write(line, file=sys.stdout)
