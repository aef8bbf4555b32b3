"""Compositions as weighted sets of elements."""

from __future__ import annotations

import numpy as np

from atomsets_tf.errors import CompositionParseError, EmptyStructureError

#: Highest atomic number the package's element tables are indexed by.
MAX_Z = 94


def composition_to_set(formula) -> tuple[np.ndarray, np.ndarray]:
    """A composition as its elements and their atom fractions.

    Args:
        formula: a composition string such as ``"Fe0.62C0.001Ni0.19"`` or
            ``"Ag(AuS)2"``, or a pymatgen ``Composition``.

    Returns:
        ``(atomic_numbers, fractions)``: int32 ``(n_elements,)`` sorted by
        atomic number, and float32 ``(n_elements,)`` summing to 1.

    Raises:
        CompositionParseError: pymatgen cannot parse the string.
        EmptyStructureError: the composition has no atoms.
    """
    from pymatgen.core import Composition, DummySpecies

    if isinstance(formula, Composition):
        comp = formula
    else:
        text = str(formula).strip()
        if not text:
            raise EmptyStructureError("empty composition string")
        try:
            comp = Composition(text)
        except Exception as exc:  # pymatgen raises ValueError, KeyError, ...
            raise CompositionParseError(f"cannot parse composition {text!r}: {exc}") from None
    amounts = {}
    for el, amt in comp.items():
        if isinstance(el, DummySpecies):  # e.g. "Xx"
            raise CompositionParseError(f"cannot parse composition {str(formula)!r}: {el.symbol} is not an element")
        if amt < 0:
            raise CompositionParseError(f"composition {formula!s} has a negative amount of {el!s}")
        z = int(el.Z)
        amounts[z] = amounts.get(z, 0.0) + float(amt)
    total = sum(amounts.values())
    if not amounts or total <= 0:
        raise EmptyStructureError(f"composition {formula!s} has no atoms")
    zs = np.array(sorted(amounts), dtype=np.int32)
    fracs = np.array([amounts[z] / total for z in zs], dtype=np.float32)
    return zs, fracs
