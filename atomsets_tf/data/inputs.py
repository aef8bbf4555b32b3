"""Data already in memory as a :class:`~atomsets_tf.data.io.Table`: pandas DataFrames, ASE Atoms, pymatgen
objects and formula strings.

:func:`as_table` is what every function that takes data calls first (``fit``, ``retrain``, ``prepare``,
``predict_table``, ``tap_table``, ``MEGNet.tap``, ...; paths and task names it hands to
:func:`~atomsets_tf.data.io.load`). The entries pass the checks a data file's do (:func:`~atomsets_tf.data.io.checked_table`:
unique ids, one kind of input, compositions that parse, structures with sites, none closer than
:data:`~atomsets_tf.data.structures.MIN_SITE_DISTANCE`), and an error names the entry (its id, by default its
position) and where it came from (``<list>``, ``<DataFrame>``, ...).

A table read from memory records so in its ``meta`` (:data:`IN_MEMORY`): a training run fingerprints its content
(:func:`table_content_hash`: ids, inputs, targets) rather than a path, so that a run resumes on the same data and
refuses other data.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.fingerprints import entries_hash, is_structure
from atomsets_tf.data.io import (
    COMPOSITION_COLUMNS,
    ID_COLUMNS,
    Table,
    check_unique_ids,
    checked_table,
    numeric_targets,
    only_numeric_column,
)
from atomsets_tf.data.structures import structure_from_dict
from atomsets_tf.errors import AtomSetsError, DataFormatError

__all__ = ["IN_MEMORY", "as_table", "is_structure", "table_content_hash"]

#: ``Table.meta`` key of a table read from memory (its runs fingerprint its content, not a path).
IN_MEMORY = "in_memory"
#: DataFrame columns of structures (pymatgen ``Structure``, ASE ``Atoms`` or ``Structure.as_dict()``).
STRUCTURE_COLUMNS = ("structure", "structures", "atoms")
#: A string that reads as a formula rather than a path or a task name: it starts with an element (or a bracket).
_FORMULA = re.compile(r"[A-Z(\[][A-Za-z0-9.()\[\]\s+-]*")


#: What the API takes as data (a type hint for readers): a path or a matbench task name, a
#: :class:`~atomsets_tf.data.io.Table`, a pandas ``DataFrame``, or a list / tuple / array / ``Series`` of pymatgen
#: ``Structure`` / ``Composition`` objects, structure dicts, ASE ``Atoms`` or formula strings (see :func:`as_table`).
DataLike = Any


def as_table(data: DataLike, targets: Sequence | np.ndarray | None = None, ids: Sequence | None = None, *,
             target_name: str | None = None, source: str | None = None) -> Table:
    """``data`` as a checked :class:`~atomsets_tf.data.io.Table`.

    Args:
        data: a ``Table`` (returned as it is, unless ``targets`` or ``ids`` replace its own); a path or a matbench
            task name (read by :func:`~atomsets_tf.data.io.load`); a pandas ``DataFrame`` (see below); or one, or a
            list / tuple / array / pandas ``Series`` of, pymatgen ``Structure`` objects, their ``as_dict()``, ASE
            ``Atoms`` (converted by ``pymatgen.io.ase.AseAtomsAdaptor``), pymatgen ``Composition`` objects or
            formula strings (``"Fe2O3"``, ``"Fe0.7Ni0.3"``). Structures and Atoms give a structure table,
            compositions and formulas a composition table; one list cannot mix the two.
            A ``DataFrame`` has an input column (``structure`` / ``atoms``, ``composition`` / ``formula``, or the
            first column holding structures, Atoms or Compositions), maybe an id column (``id``, ``mbid``, ...;
            else its index, unless that is a plain ``RangeIndex``) and maybe a target column: ``target_name``,
            else the one column left that holds numbers (several: an error; a text column holding some numbers
            counts, and its other values are refused); text columns without numbers are ignored.
        targets: one target per entry (replacing any the data holds); ``None``, NaN or "" is missing.
        ids: one id per entry (default: the data's own, an ``Atoms``' ``info["id"]`` or ``info["name"]``, the
            DataFrame's id column or index, else ``"0"``, ``"1"``, ...).
        target_name: the target's name (a DataFrame's target column, an ``Atoms.info`` key, a CSV column).
        source: how messages name the data (default ``"<list>"``, ``"<DataFrame>"``, ...).

    Returns:
        The table; one read from memory has ``meta[IN_MEMORY]``.

    Raises:
        DataFormatError: a mixed list (naming the entry), an entry that is no input, duplicate ids, a DataFrame
            without an input column or with an ambiguous target, sites too close, ``ids`` / ``targets`` of
            another length.
        CompositionParseError, EmptyStructureError: a formula or a structure that is not valid, naming the entry.
        InvalidTargetError: a target that is not a number, naming the entry.
        MissingExtraError: a path of an ASE-readable file without ASE.
    """
    if isinstance(data, Table):
        return _replace_columns(data, targets, ids, target_name)
    if is_path(data):
        return _replace_columns(data_io.load(data, target_name), targets, ids, target_name)
    if _is_dataframe(data):
        return _from_dataframe(data, targets, ids, target_name, source or "<DataFrame>")
    items, default_ids, label = _items(data)
    return _from_items(items, targets, ids if ids is not None else default_ids, target_name, source or label)


def table_content_hash(table: Table) -> str:
    """A short SHA-256 of a table's ids, inputs and targets
    (:func:`~atomsets_tf.data.fingerprints.entries_hash`): what a run on in-memory data fingerprints."""
    return entries_hash(table.ids, table.inputs, table.targets)[:16]


def is_path(data) -> bool:
    """A path or a task name, not a formula: an existing path, or a string that does not read as a formula."""
    if isinstance(data, os.PathLike):
        return True
    if not isinstance(data, str):
        return False
    return Path(data).exists() or os.sep in data or data.lower().endswith(data_io.DATA_SUFFIXES) or \
        data_io.is_structure_file_name(data) or not _FORMULA.fullmatch(data.strip())


def _is_dataframe(data) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame exists only once pandas has been imported
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _is_series(data) -> bool:
    pandas = sys.modules.get("pandas")  # as in _is_dataframe
    return pandas is not None and isinstance(data, pandas.Series)


def _is_atoms(value) -> bool:
    ase = sys.modules.get("ase")  # ASE is optional: without it imported, nothing is an Atoms
    return ase is not None and isinstance(value, ase.Atoms)


def _is_composition(value) -> bool:
    module = sys.modules.get("pymatgen.core.composition")  # as in is_structure
    return module is not None and isinstance(value, module.Composition)


def _is_entry(value) -> bool:
    """Whether ``value`` is one input (not a collection of them)."""
    return isinstance(value, (str, Mapping)) or is_structure(value) or _is_atoms(value) or _is_composition(value)


def _index_ids(index) -> list[str] | None:
    """A pandas index as ids, or ``None`` for a plain ``RangeIndex`` (0, 1, ...: the default ids anyway)."""
    pandas = sys.modules["pandas"]  # only called on pandas objects
    return None if isinstance(index, pandas.RangeIndex) else [str(i) for i in index]


def _items(data) -> tuple[list, list[str] | None, str]:
    """``(entries, their ids or None, the source label)`` of non-DataFrame data."""
    if _is_series(data):
        return list(data), _index_ids(data.index), "<Series>"
    if isinstance(data, np.ndarray):
        return list(data.reshape(-1)), None, "<array>"
    if isinstance(data, (list, tuple)):
        return list(data), None, f"<{'list' if isinstance(data, list) else 'tuple'}>"
    if _is_entry(data):
        return [data], None, "<input>"
    if isinstance(data, Iterable):
        return list(data), None, "<iterable>"
    raise DataFormatError(f"cannot read data of type {type(data).__name__}: expected a path, a Table, a DataFrame, "
                          "or structures, Atoms, Compositions or formulas")


def _from_items(items: list, targets, ids, target_name: str | None, source: str) -> Table:
    """The checked table of a list of inputs (see :func:`as_table`)."""
    if not items:
        raise DataFormatError(f"{source} holds no entries")
    atoms = [x for x in items if _is_atoms(x)]
    if ids is None:
        ids = data_io.atoms_ids(items, str) if len(atoms) == len(items) else [str(i) for i in range(len(items))]
    ids = [str(i) for i in ids]
    if len(ids) != len(items):
        raise DataFormatError(f"{source}: {len(ids)} ids for {len(items)} entries")
    check_unique_ids(ids, source)
    parsed = [_parse_entry(value, entry_id, source) for value, entry_id in zip(items, ids)]
    _check_one_kind([kind for kind, _ in parsed], ids, source)
    if targets is None and target_name is not None and len(atoms) == len(items):
        targets, target_name = data_io.atoms_targets(items, target_name, source)
    table = checked_table(ids, [value for _, value in parsed], targets, target_name or "target", source)
    table.meta[IN_MEMORY] = True
    return table


def _check_one_kind(kinds: list[str], ids: list[str], source: str) -> None:
    """Refuse compositions mixed with structures, naming the first entry of the other kind."""
    first = kinds[0]
    other = next((i for i, kind in enumerate(kinds) if kind != first), None)
    if other is not None:
        raise DataFormatError(f"{source}: entry {ids[other]} is a {kinds[other]} but entry {ids[0]} is a {first}: "
                              "one data set holds either compositions or structures")


def _parse_entry(value, entry_id: str, source: str) -> tuple[str, object]:
    """``("composition", formula string)`` or ``("structure", Structure)`` of one input."""
    if isinstance(value, str):
        return "composition", value
    if _is_composition(value):
        return "composition", _composition_text(value, entry_id, source)
    if is_structure(value):
        return "structure", _mutable(value)
    if _is_atoms(value):
        return "structure", data_io.structure_from_atoms(value, entry_id, source)
    if isinstance(value, Mapping):
        return "structure", structure_from_dict(dict(value), entry_id, source)
    raise DataFormatError(f"{source}: entry {entry_id}: input of type {type(value).__name__} is neither a "
                          "composition (a formula or a pymatgen Composition) nor a structure (a pymatgen "
                          "Structure, its as_dict(), or ASE Atoms)")


def _mutable(structure):
    """A pymatgen ``Structure`` as it is, an ``IStructure`` as a ``Structure`` (what the readers give)."""
    module = sys.modules["pymatgen.core.structure"]  # only called on structures
    return structure if isinstance(structure, module.Structure) else module.Structure.from_sites(structure.sites)


def _composition_text(composition, entry_id: str, source: str) -> str:
    """A pymatgen ``Composition`` as a formula string holding its amounts exactly (``"Fe0.7 Ni0.3"``), checked
    first (an infinite amount does not survive as text)."""
    try:
        composition_to_set(composition)
    except AtomSetsError as exc:
        raise type(exc)(f"{source}: entry {entry_id}: {exc}") from None
    parts = []
    for element, amount in composition.items():
        amount = float(amount)
        parts.append(f"{getattr(element, 'symbol', element)}{int(amount) if amount.is_integer() else repr(amount)}")
    return " ".join(parts)


def _replace_columns(table: Table, targets, ids, target_name: str | None) -> Table:
    """``table`` with ``ids`` and ``targets`` (and ``target_name``) replaced where given."""
    if targets is None and ids is None:
        return table
    new_ids = table.ids if ids is None else [str(i) for i in ids]
    if len(new_ids) != len(table):
        raise DataFormatError(f"{table.source or 'the data'}: {len(new_ids)} ids for {len(table)} entries")
    check_unique_ids(new_ids, table.source or "the data")
    new_targets = table.targets if targets is None else numeric_targets(targets, new_ids, table.source or "the data")
    name = target_name or (table.target_name if targets is None else "target")
    return replace(table, ids=new_ids, targets=new_targets, target_name=name, meta=dict(table.meta))


def _column_holds(series, test) -> bool:
    """Whether the first non-missing value of a DataFrame column passes ``test``."""
    values = series.dropna()
    return len(values) > 0 and test(values.iloc[0])


def _input_column(df, source: str):
    """The column of a DataFrame's inputs: by name, else the first holding structures, Atoms or Compositions."""
    by_name = {str(c).lower(): c for c in df.columns}
    for name in (*STRUCTURE_COLUMNS, *COMPOSITION_COLUMNS):
        if name in by_name:
            return by_name[name]
    for column in df.columns:
        if _column_holds(df[column], lambda v: _is_entry(v) and not isinstance(v, str)):
            return column
    raise DataFormatError(f"{source}: no input column: name one {' / '.join(STRUCTURE_COLUMNS)} (structures or "
                          f"Atoms) or {' / '.join(COMPOSITION_COLUMNS)} (formulas), columns: "
                          f"{', '.join(map(str, df.columns))}")


def _target_column(df, rest: list, target_name: str | None, source: str):
    """The target column among ``rest``: ``target_name``, else the one that holds numbers, else ``None``."""
    pandas = sys.modules["pandas"]  # only called on DataFrames
    if target_name is not None:
        match = [c for c in rest if str(c) == target_name]
        if not match:
            raise DataFormatError(f"{source}: no target column {target_name!r} (columns: "
                                  f"{', '.join(map(str, df.columns))})")
        return match[0]
    return only_numeric_column([c for c in rest if _holds_numbers(df[c], pandas)], source)


def _holds_numbers(series, pandas) -> bool:
    """A numeric or boolean column, or one of text (or objects) of which some value reads as a number (as a CSV
    column's would: its other values are then refused as targets)."""
    if pandas.api.types.is_numeric_dtype(series) or pandas.api.types.is_bool_dtype(series):
        return True
    for value in series.dropna():
        try:
            float(value)
            return True
        except (TypeError, ValueError):
            continue
    return False


def _from_dataframe(df, targets, ids, target_name: str | None, source: str) -> Table:
    """The checked table of a DataFrame (see :func:`as_table`)."""
    input_col = _input_column(df, source)
    by_name = {str(c).lower(): c for c in df.columns if c != input_col}
    id_col = next((by_name[c] for c in ID_COLUMNS if c in by_name), None)
    rest = [c for c in df.columns if c not in (input_col, id_col)]
    target_col = _target_column(df, rest, target_name, source) if targets is None else None
    if ids is None:
        ids = [str(i) for i in df[id_col]] if id_col is not None else _index_ids(df.index)
    if targets is None and target_col is not None:
        column = df[target_col].astype(object)
        targets = column.where(column.notna(), None).tolist()  # NaN, None, pd.NA: missing
    name = target_name or (None if target_col is None else str(target_col))
    return _from_items(list(df[input_col]), targets, ids, name, source)

