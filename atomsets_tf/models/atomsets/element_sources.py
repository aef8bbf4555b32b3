"""The V0 element tables that AtomSets-V0 may combine: shipped tables and MEGNet embedding layers.

A source is named by a string:

* ``"megnet"``: the 16-wide elemental embedding megnet ships (``elemental_embedding_1MEGNet_layer.json``, shipped
  with the package too; elements H..Pu less a few);
* ``"matscholar"``: the 200-wide matscholar embedding CGAT starts from (H..Lr);
* a MEGNet preset (``megnet-mp-2019.4.1-formation_energy``, ``megnet-mp-2018.6.1-band_gap_regression``,
  ``megnet-mp-2019.4.1-log10K``, ``megnet-mp-2019.4.1-log10G``, ``megnet-mp-2019.4.1-efermi``, ...; see
  ``atomsets-tf models``) or a MEGNet checkpoint file: the 16-wide ``atom_embedding`` layer it learnt (H..Pu).
  The formation-energy MEGNet's is the default (:data:`DEFAULT_V0_SOURCES`), the AtomSets paper's V0.

:func:`element_features_table` concatenates the sources per element, unscaled
(:meth:`~atomsets_tf.data.elements.ElementTable.concatenate`); an element that any
source lacks is unknown. Unscaled was chosen by measurement
(``benchmarks/results/v0_sources``, official folds, validation MAE): standardising each
source per column (:data:`STANDARDIZE_SOURCES`, ``standardize=True``) was worse for all
6 source sets on matbench_expt_gap (e.g. the four MEGNet embeddings + matscholar: 0.432 eV
standardised, 0.413 eV unscaled) and for 5 of 6 on matbench_steels (the one pair run on
matbench_glass favoured standardising: val ROC-AUC 0.946 against 0.937).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from atomsets_tf import presets
from atomsets_tf.data.elements import (
    ElementTable,
    embedded_embedding_table,
    matscholar_element_table,
    megnet_element_table,
)
from atomsets_tf.errors import AtomSetsError, PresetNotAvailableError, UnknownPresetError
from atomsets_tf.models.megnet.model import load_megnet
from atomsets_tf.models.registry import DEFAULT_SOURCE

#: The sources that are element tables (not MEGNet models), by name.
TABLE_SOURCES: dict[str, Callable[[], ElementTable]] = {
    "megnet": megnet_element_table,
    "matscholar": matscholar_element_table,
}
#: The V0 of ``atomsets-v0`` when neither ``element_features`` nor ``features_from`` names one: the AtomSets paper's
#: own (Table 1: "transferring learned V0 from the parent formation energy model"), the atom embedding of the parent
#: formation-energy MEGNet. The package embeds its rows (``resources/megnet_v0/``), so the default runs offline.
DEFAULT_V0_SOURCES: tuple[str, ...] = (DEFAULT_SOURCE,)
#: Whether :func:`element_features_table` standardises each source per column before concatenating
#: (recorded in a run's fingerprint: see :func:`element_features_settings`). Off: see the module's docstring.
STANDARDIZE_SOURCES = False


def megnet_sources() -> list[str]:
    """The MEGNet presets whose embedding layer is a source (sorted)."""
    return sorted(name for name in presets.preset_names() if presets.get_preset(name).kind == "megnet")


def check_element_features(model: str, features_from: str | None, element_features) -> None:
    """Refuse ``element_features`` for a model other than ``atomsets-v0``, or together with ``features_from``."""
    if element_features is None:
        return
    if model != "atomsets-v0":
        raise AtomSetsError(f"element_features (--element-features) choose the V0 table of atomsets-v0, not of {model}")
    if features_from is not None:
        raise AtomSetsError("atomsets-v0 takes its V0 table from element_features (--element-features) or from "
                            "features_from (--features-from), not both: name the MEGNet in element_features")


def v0_sources(model: str, features_from: str | None, element_features: Sequence[str] | str | None) -> list[str] | None:
    """The element feature sources a run of ``model`` takes its V0 table from: ``element_features`` as given; for
    ``atomsets-v0`` with neither ``element_features`` nor ``features_from``, :data:`DEFAULT_V0_SOURCES`; else None
    (``features_from``'s embedding, or no V0 table).

    Raises:
        AtomSetsError: ``element_features`` with another model than ``atomsets-v0`` or with ``features_from``
            (:func:`check_element_features`).
    """
    if element_features is not None:
        check_element_features(model, features_from, element_features)
        return [element_features] if isinstance(element_features, str) else list(element_features)
    if model == "atomsets-v0" and features_from is None:
        return list(DEFAULT_V0_SOURCES)
    return None


def element_source_names(names: Sequence[str] | str) -> list[str]:
    """``names`` checked: a non-empty list of distinct known sources, in the order given.

    Raises:
        AtomSetsError: an unknown name (naming it and the known ones), a name given twice, or none.
    """
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if not names:
        raise AtomSetsError("element_features names no source; give at least one of "
                            f"{', '.join(TABLE_SOURCES)}, or a MEGNet preset or checkpoint")
    known = set(TABLE_SOURCES) | set(megnet_sources())
    for i, name in enumerate(names):
        if name not in known and not Path(name).is_file():
            raise AtomSetsError(f"unknown element feature source {name!r}: choose {', '.join(TABLE_SOURCES)}, "
                                f"a MEGNet preset ({', '.join(megnet_sources())}) or a MEGNet checkpoint file")
        if name in names[:i]:
            raise AtomSetsError(f"element feature source {name!r} is given twice")
    return names


def element_source_table(name: str) -> ElementTable:
    """The element table of one source (see the module's docstring), unscaled.

    Raises:
        AtomSetsError: an unknown source, or one whose files cannot be read.
    """
    name = element_source_names([name])[0]
    if name in TABLE_SOURCES:
        return TABLE_SOURCES[name]()
    # The package's copy of a preset's rows (offline, no hdf5 read), for preset names only (never a file's name).
    embedded = embedded_embedding_table(name) if name in megnet_sources() else None
    if embedded is not None and embedded[1] != presets.get_preset(name).files["hdf5"].sha256:
        raise AtomSetsError(f"the embedded V0 table of {name} was read from another checkpoint than the preset's")
    try:
        rows = embedded[0] if embedded is not None else load_megnet(name).embedding_table()
    except PresetNotAvailableError as exc:
        offline = ", ".join(n for n in megnet_sources() if embedded_embedding_table(n) is not None)
        raise PresetNotAvailableError(f"element feature source {name!r}: {exc}; offline, the package embeds the "
                                      f"V0 table of {offline}") from None
    except UnknownPresetError as exc:
        raise AtomSetsError(f"element feature source {name!r}: {exc}") from None
    known = np.ones(len(rows), dtype=bool)
    known[0] = False  # row 0 is the padding of atomic numbers, no element
    return ElementTable(rows, known, name=f"{name} embedding")


def element_features_table(names: Sequence[str] | str, standardize: bool | None = None) -> ElementTable:
    """The V0 table of ``names``: each source's rows (standardised per column when ``standardize``), side by side.

    Args:
        names: sources (see the module's docstring), in the order their columns appear.
        standardize: scale each source's columns to mean 0, standard deviation 1 over its known elements
            (default: :data:`STANDARDIZE_SOURCES`).

    Returns:
        An :class:`~atomsets_tf.data.elements.ElementTable` whose width is the sum of the sources' widths and
        whose known elements are those every source knows.

    Raises:
        AtomSetsError: an unknown source name, or a source that cannot be read.
    """
    tables = [element_source_table(name) for name in element_source_names(names)]
    if STANDARDIZE_SOURCES if standardize is None else standardize:
        tables = [table.standardized() for table in tables]
    return ElementTable.concatenate(tables, name=" + ".join(element_source_names(names)))


def element_features_settings(names: Sequence[str] | str) -> dict:
    """What a run records of its element feature sources: ``{"sources": [...], "standardized": bool}``.

    Raises:
        AtomSetsError: an unknown source name.
    """
    return {"sources": element_source_names(names), "standardized": STANDARDIZE_SOURCES}
