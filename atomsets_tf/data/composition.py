"""Compositions as weighted sets of elements."""

from __future__ import annotations

import math
import re

import numpy as np

from atomsets_tf.errors import CompositionParseError, EmptyStructureError

#: Highest atomic number the package's element tables are indexed by.
MAX_Z = 94


def _check_amount(label: str, element, amount) -> None:
    """Refuse an amount that is not a finite positive number."""
    if not math.isfinite(float(amount)):
        raise CompositionParseError(f"composition {label} has a non-finite amount of {element!s} ({amount})")
    if amount <= 0:
        raise CompositionParseError(f"composition {label} has a non-positive amount of {element!s} ({amount})")


#: An element symbol (or a closing bracket) and the amount written after it: ``Fe2``, ``C0.5``, ``O-1``, ``H1e400``.
_AMOUNT = re.compile(r"([A-Z][a-z]*|[)\]])\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def _parse_composition(text: str):
    """``Composition(text)``, refusing every non-finite or non-positive amount as written.

    pymatgen drops elements whose amount is (nearly) zero, so ``"Fe0O"`` would read as
    ``"O"``: every number written in the text is checked first, by our own scan rather than
    through pymatgen's private parser, so that no pymatgen release can change what is refused.
    """
    from pymatgen.core import Composition  # pymatgen is slow to import

    for symbol, amount in _AMOUNT.findall(text):
        _check_amount(text, "the group" if symbol in ")]" else symbol, float(amount))
    try:
        return Composition(text)
    except Exception as exc:  # pymatgen raises ValueError, KeyError, ...
        raise CompositionParseError(f"cannot parse composition {text!r}: {exc}") from None


def composition_to_set(formula) -> tuple[np.ndarray, np.ndarray]:
    """A composition as its elements and their atom fractions.

    Args:
        formula: a composition string such as ``"Fe0.62C0.001Ni0.19"`` or
            ``"Ag(AuS)2"``, or a pymatgen ``Composition``.

    Returns:
        ``(atomic_numbers, fractions)``: int32 ``(n_elements,)`` sorted by
        atomic number, and float32 ``(n_elements,)`` summing to 1.

    Raises:
        CompositionParseError: pymatgen cannot parse the string, or an amount is not a finite
            positive number (``"H1e400"``, ``"Fe-1O"``, ``"Fe0O"``).
        EmptyStructureError: the composition has no atoms.
    """
    from pymatgen.core import Composition, DummySpecies  # pymatgen is slow to import

    if isinstance(formula, Composition):
        comp = formula
        label = " ".join(f"{el}{amt}" for el, amt in comp.items())  # str(comp) fails on an infinite amount
    else:
        label = text = str(formula).strip()
        if not text:
            raise EmptyStructureError("empty composition string")
        comp = _parse_composition(text)
    amounts = {}
    for el, amt in comp.items():
        if isinstance(el, DummySpecies):  # e.g. "Xx"
            raise CompositionParseError(f"cannot parse composition {label!r}: {el.symbol} is not an element")
        _check_amount(label, el, amt)
        z = int(el.Z)
        amounts[z] = amounts.get(z, 0.0) + float(amt)
    total = sum(amounts.values())
    if not amounts or total <= 0:
        raise EmptyStructureError(f"composition {label} has no atoms")
    if not math.isfinite(total):
        raise CompositionParseError(f"composition {label} has amounts too large to add up ({total})")
    zs = np.array(sorted(amounts), dtype=np.int32)
    fracs = np.array([amounts[z] / total for z in zs], dtype=np.float32)
    return zs, fracs
