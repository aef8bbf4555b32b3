"""Reading data sets: matbench-layout JSON, CSV, ASE-readable files (extxyz, xyz, traj), and folders of
structure files.

A data set is a :class:`Table`: ids, inputs (composition strings or pymatgen
structures) and, when the file has them, targets. Data already in memory (a pandas ``DataFrame``, ASE
``Atoms``, pymatgen objects, formula strings) is read by :func:`atomsets_tf.data.inputs.as_table`.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.matbench_tasks import MATBENCH_URL, TASKS
from atomsets_tf.data.records import MANIFEST
from atomsets_tf.data.structures import (  # noqa: F401  (MIN_SITE_DISTANCE: re-exported, read from here)
    MIN_SITE_DISTANCE,
    check_site_distances,
    input_label,
    merge_shared_positions,
    structure_from_dict,
)
from atomsets_tf.errors import (
    AtomSetsError,
    DataFormatError,
    EmptyStructureError,
    InvalidTargetError,
    MissingExtraError,
)
from atomsets_tf.utils.io import shared_dir

#: Environment variable naming a folder of the user's data files.
DATA_ENV = "ATOMSETS_TF_DATA"
#: The data set embedded in the package for the offline default job.
EMBEDDED_TASK = "matbench_steels"
_RESOURCES = Path(__file__).resolve().parent.parent / "resources"
_STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
#: ``Table.meta`` key: the numeric values an ASE file's frames all record, when there are several to choose from.
TARGET_CANDIDATES = "target_candidates"
#: Files read with ASE (``ase.io.read(path, index=":")``; the ``ase`` extra): every frame is an entry.
ASE_SUFFIXES = (".extxyz", ".xyz", ".traj")
#: Every file suffix a data file may have (JSON, CSV, ASE-readable, CIF/POSCAR): a string ending in one is a path.
DATA_SUFFIXES = (".json", ".gz", ".csv", *ASE_SUFFIXES, *_STRUCTURE_SUFFIXES)
#: Keys of ``Atoms.info`` that hold an entry's id, in order of preference.
ATOMS_ID_KEYS = ("id", "name")
#: What to install for ASE-readable files and ASE ``Atoms``.
ASE_HINT = 'pip install "atomsets-tf[ase]"'
#: Column names of compositions and of ids, in CSV and JSON files and in DataFrames (data.inputs).
COMPOSITION_COLUMNS = ("composition", "formula", "formula_pretty", "comp")
ID_COLUMNS = ("id", "ids", "material_id", "mbid", "name")


@dataclass
class Table:
    """Ids, inputs and targets of one data set.

    Attributes:
        ids: one id per entry.
        inputs: composition strings (``kind == "composition"``) or pymatgen
            ``Structure`` objects (``kind == "structure"``).
        targets: float64 ``(n,)``, or ``None`` for a file without targets.
        kind: ``"composition"``, ``"structure"``, or ``"prepared"`` (``inputs`` are then positions in
            ``prepared``).
        target_name: the target column's name.
        source: where the table was read from.
        prepared: the :class:`~atomsets_tf.data.prepared.PreparedDataset` the table reads (else ``None``):
            the models read its records (graphs or taps) instead of building them.
    """

    ids: list[str]
    inputs: list
    targets: np.ndarray | None
    kind: str
    target_name: str = "target"
    source: str = ""
    meta: dict = field(default_factory=dict)
    prepared: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices) -> Table:
        """The entries at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Table(
            ids=[self.ids[i] for i in indices],
            inputs=[self.inputs[i] for i in indices],
            targets=None if self.targets is None else self.targets[indices],
            kind=self.kind,
            target_name=self.target_name,
            source=self.source,
            meta=dict(self.meta),
            prepared=self.prepared,
        )

    def require_targets(self) -> np.ndarray:
        """The targets, checked to be present and finite."""
        if self.targets is None:
            candidates = self.meta.get(TARGET_CANDIDATES)
            if candidates:
                raise DataFormatError(f"{self.source or 'the data'} has several possible targets "
                                      f"({', '.join(candidates)}): choose one with --target (target=...)")
            raise DataFormatError(f"{self.source or 'the data'} has no target column")
        bad = ~np.isfinite(self.targets)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = f"{self.source}: " if self.source else ""
            raise InvalidTargetError(
                f"{where}target of {self.ids[i]} is {self.targets[i]} ({int(bad.sum())} non-finite targets in all)"
            )
        return self.targets

    def task_type(self) -> str:
        """``"classification"`` when every target is 0 or 1 (booleans included), else ``"regression"``."""
        t = self.require_targets()
        return "classification" if len(t) > 1 and np.isin(t, (0.0, 1.0)).all() else "regression"


def _to_target(value, entry_id: str, source: str) -> float:
    """A target as a float: numbers, booleans and "true"/"false"; ``None`` and "" are NaN (missing)."""
    if value is None:
        return float("nan")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "false"):
            return float(v == "true")
        if v == "":
            return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidTargetError(f"{source}: entry {entry_id}: target {value!r} is not a number") from None


def _parse_input(value, entry_id: str, source: str):
    if isinstance(value, dict):
        return structure_from_dict(value, entry_id, source)
    if isinstance(value, str):
        return value
    raise DataFormatError(
        f"{source}: entry {entry_id}: input of type {type(value).__name__} is neither a composition nor a structure")


def _check_inputs(ids: list[str], inputs: list, kind: str, source: str) -> None:
    """Refuse physically invalid entries at load time: structures without sites or with sites too close
    together, compositions that do not parse or have a non-finite or non-positive amount. The error names the
    file and the entry."""
    checked: set[str] = set()
    for entry_id, value in zip(ids, inputs):
        entry = f"{source}: entry {entry_id}"
        if kind == "structure":
            if len(value) == 0:
                raise EmptyStructureError(f"{entry}: structure has no sites")
            check_site_distances(value, entry)
        elif value not in checked:
            try:
                composition_to_set(value)
            except AtomSetsError as exc:
                raise type(exc)(f"{entry}: {exc}") from None
            checked.add(value)


def _read_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            return json.load(fh)
    except (OSError, ValueError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt gzip body
        raise DataFormatError(f"cannot read {path}: {exc}") from None


def _matbench_columns(raw: dict, path: Path) -> tuple[list[str], list, list]:
    """``(ids, columns, rows)`` of matbench's layout, each row checked to be a list of one value per column."""
    index, columns, rows = raw["index"], raw["columns"], raw["data"]
    for key, value in (("index", index), ("columns", columns), ("data", rows)):
        if not isinstance(value, list):
            raise DataFormatError(f"{path}: '{key}' must be a list, got {type(value).__name__}")
    if not columns:
        raise DataFormatError(f"{path}: 'columns' is empty")
    ids = [str(i) for i in index]
    if len(rows) != len(ids):
        raise DataFormatError(f"{path}: {len(ids)} ids but {len(rows)} rows")
    for entry_id, row in zip(ids, rows):
        if not isinstance(row, list):
            raise DataFormatError(f"{path}: entry {entry_id}: row is a {type(row).__name__}, not a list of "
                                  f"{len(columns)} values ({', '.join(map(str, columns))})")
        if len(row) != len(columns):
            raise DataFormatError(f"{path}: entry {entry_id}: row has {len(row)} values, expected {len(columns)} "
                                  f"({', '.join(map(str, columns))})")
    return ids, columns, rows


def _chosen_target(path: Path, columns: list, target: str | None, default):
    """``target`` when given (it must be one of ``columns``), else ``default``."""
    if target is None:
        return default
    if target not in columns:
        raise DataFormatError(f"{path}: no target column {target!r} (columns: {', '.join(map(str, columns))})")
    return target


def _table_from_json(path: Path, parse: bool = True, target: str | None = None) -> Table:
    """The table of a JSON file (its target column ``target``, by default the first after the input); without
    ``parse``, its inputs are the values the file holds (unparsed)."""
    raw = _read_json(path)
    source = str(path)
    read = _parse_input if parse else (lambda value, entry_id, source: value)
    if isinstance(raw, dict) and {"index", "columns", "data"} <= raw.keys():
        ids, columns, rows = _matbench_columns(raw, path)
        input_col = 0
        default = columns[1] if len(columns) > 1 else None
        chosen = _chosen_target(path, columns[1:], target, default)
        target_col = None if chosen is None else columns.index(chosen)
        targets_raw = [r[target_col] for r in rows] if target_col is not None else None
        inputs = [read(r[input_col], i, source) for r, i in zip(rows, ids)]
        target_name = str(columns[target_col]) if target_col is not None else "target"
    elif isinstance(raw, dict) and raw and all(isinstance(v, list) for v in raw.values()):
        # A dict of parallel lists, e.g. {"structure": [...], "Ef": [...]}.
        keys = list(raw)
        n = len(raw[keys[0]])
        if any(len(raw[k]) != n for k in keys):
            raise DataFormatError(f"{path}: columns of different lengths")
        input_key = next((k for k in keys if k in ("structure", "structures", *COMPOSITION_COLUMNS)), keys[0])
        id_key = next((k for k in keys if k in ID_COLUMNS), None)
        rest = [k for k in keys if k not in (input_key, id_key)]
        ids = [str(x) for x in raw[id_key]] if id_key else [f"{path.name.split('.')[0]}-{i:03d}" for i in range(n)]
        inputs = [read(v, i, source) for v, i in zip(raw[input_key], ids)]
        chosen = _chosen_target(path, rest, target, rest[0] if rest else None)
        target_name = chosen if chosen is not None else "target"
        targets_raw = raw[chosen] if chosen is not None else None
    else:
        raise DataFormatError(
            f"{path}: expected matbench's layout {{'index', 'columns', 'data'}} or a dict of parallel lists"
        )
    return checked_table(ids, inputs, targets_raw, target_name, source, check=parse)


def read_raw_structures(path: str | os.PathLike) -> Table | None:
    """A JSON data file of structures (or a matbench task name) as a table whose inputs are the structure dicts it
    holds, not yet parsed nor checked (ids and targets are); ``None`` for any other data (a CSV, a folder,
    compositions).

    For ``prepare``, whose workers parse and check each structure
    (:class:`~atomsets_tf.data.structures.ParsedStructures`), so that a large file is not parsed in one process.
    """
    p, task = Path(path), None
    if not p.exists() and isinstance(path, str) and os.sep not in path:  # a matbench task name
        try:
            p, task = resolve_task(path), task_name(path)
        except DataFormatError:
            return None
    if not (p.is_file() and p.name.lower().endswith((".json", ".json.gz"))):
        return None
    table = _table_from_json(p, parse=False)
    if not all(isinstance(value, dict) for value in table.inputs):
        return None
    table.meta.update({"raw_structures": True, **({"task": task} if task else {})})
    return table


def checked_table(ids, inputs, targets_raw, target_name, source, check: bool = True) -> Table:
    """The checked :class:`Table`: unique ids, one kind of input, valid inputs (unless not ``check``), numeric
    targets (``None`` and "" are missing: NaN, refused by :meth:`Table.require_targets`).

    Every reader ends here, the files' and :mod:`~atomsets_tf.data.inputs`' alike.

    Raises:
        DataFormatError: no entries, duplicate ids, compositions mixed with structures, a structure whose sites
            are too close (naming the entry).
        EmptyStructureError: a structure without sites or an empty composition (naming the entry).
        CompositionParseError: a composition that does not parse (naming the entry).
        InvalidTargetError: a target that is not a number (naming the entry).
    """
    if not ids:
        raise DataFormatError(f"{source} holds no entries")
    check_unique_ids(ids, source)
    kinds = {"structure" if not isinstance(x, str) else "composition" for x in inputs}
    if len(kinds) != 1:
        raise DataFormatError(f"{source} mixes compositions and structures")
    kind = kinds.pop()
    if kind == "structure":  # partly occupied species listed at one position: one disordered site
        inputs = [x if isinstance(x, dict) else merge_shared_positions(x) for x in inputs]
    if check:
        _check_inputs(list(ids), list(inputs), kind, source)
    targets = None if targets_raw is None else numeric_targets(targets_raw, ids, source)
    return Table(list(ids), list(inputs), targets, kind, target_name, source)


def check_unique_ids(ids, source: str) -> None:
    """Refuse duplicate ids, naming the first few (sorted).

    Raises:
        DataFormatError: naming ``source`` and the duplicated ids.
    """
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
        shown = ", ".join(duplicates[:5]) + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        raise DataFormatError(f"{source} has duplicate ids: {shown}")


def numeric_targets(targets_raw, ids, source: str) -> np.ndarray:
    """float64 targets of ``targets_raw`` (numbers, booleans, "true"/"false"; ``None``, "" and NaN: missing).

    Raises:
        DataFormatError: not one target per id.
        InvalidTargetError: a target that is not a number, naming ``source`` and the entry.
    """
    targets_raw = list(targets_raw)
    if len(targets_raw) != len(ids):
        raise DataFormatError(f"{source}: {len(targets_raw)} targets for {len(ids)} entries")
    return np.array([_to_target(t, i, source) for t, i in zip(targets_raw, ids)], dtype=np.float64)


def _table_from_csv(path: Path, target: str | None = None) -> Table:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise DataFormatError(f"{path} holds no rows")
    cols = list(rows[0].keys())
    lower = {c.lower(): c for c in cols}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    comp_col = next((lower[c] for c in COMPOSITION_COLUMNS if c in lower), None)
    if comp_col is None:
        raise DataFormatError(f"{path}: no composition column (one of {', '.join(COMPOSITION_COLUMNS)}) in {cols}")
    rest = [c for c in cols if c not in (id_col, comp_col)]
    if target is not None and target not in rest:
        raise DataFormatError(f"{path}: no target column {target!r} (columns: {cols})")
    target_col = target or _csv_target_column(rows, rest, path)
    ids = [r[id_col] for r in rows] if id_col else [f"{path.stem}-{i:04d}" for i in range(len(rows))]
    inputs = [r[comp_col] for r in rows]
    targets_raw = [r[target_col] for r in rows] if target_col else None
    return checked_table(ids, inputs, targets_raw, target_col or "target", str(path))


def _csv_target_column(rows: list[dict], columns: list[str], path: Path) -> str | None:
    """The target column, never a guess: the one column besides the id and the composition, or of several the
    one of which some value reads as a number (or a boolean); with several such, the caller must name one."""
    if len(columns) <= 1:
        return columns[0] if columns else None
    return only_numeric_column([c for c in columns if any(_is_number_text(r[c]) for r in rows)], str(path))


def only_numeric_column(numeric: list, source: str):
    """The one column of ``numeric`` (those that hold numbers) as the target, ``None`` without any; several are
    refused, named: a target is never guessed."""
    if len(numeric) > 1:
        raise DataFormatError(f"{source}: which column is the target? several are numeric "
                              f"({', '.join(map(str, numeric))}): name one (--target on the command line; target= "
                              "in the API, target_name= for data in memory)")
    return numeric[0] if numeric else None


def _is_number_text(text) -> bool:
    if str(text).strip().lower() in ("true", "false"):
        return True
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _table_from_dir(path: Path) -> Table:
    """Every CIF (each data block) and POSCAR/CONTCAR file of a folder, in file-name order."""
    files = sorted(p for p in path.iterdir() if p.is_file() and _is_structure_file(p))
    if not files:
        raise DataFormatError(f"{path}: no CIF or POSCAR files")
    parts = [_table_from_structure_file(f) for f in files]
    ids = [i for part in parts for i in part.ids]
    inputs = [s for part in parts for s in part.inputs]
    return checked_table(ids, inputs, None, "target", str(path), check=False)  # each file's entries are checked


def is_structure_file_name(name: str) -> bool:
    """Whether a file name is a CIF or POSCAR file's (``x.cif``, ``x.vasp``, ``POSCAR``, ``CONTCAR_1``, ...)."""
    return Path(name).suffix.lower() in _STRUCTURE_SUFFIXES or Path(name).name.upper().startswith(("POSCAR", "CONTCAR"))


def _is_structure_file(path: Path) -> bool:
    return is_structure_file_name(path.name)


def _table_from_structure_file(path: Path) -> Table:
    """One CIF file (every data block: ids ``<stem>`` for one block, ``<stem>-0``, ``<stem>-1``, ... for several)
    or one POSCAR/CONTCAR file, read by pymatgen."""
    from pymatgen.core import Structure  # pymatgen is slow to import: only for structure data
    from pymatgen.io.cif import CifParser  # (the same slow import)

    try:
        if path.suffix.lower() == ".cif":
            structures = CifParser(path).parse_structures(primitive=False, on_error="raise")
        else:
            structures = [Structure.from_file(path)]
    except Exception as exc:
        raise DataFormatError(f"cannot read structure file {path}: {exc}") from None
    if not structures:
        raise DataFormatError(f"{path}: no structure in the file")
    stem = path.stem if path.suffix else path.name
    ids = [stem] if len(structures) == 1 else [f"{stem}-{k}" for k in range(len(structures))]
    return checked_table(ids, structures, None, "target", str(path))


def import_ase_io(what: str = "reading ASE files or Atoms"):
    """``ase.io``, or a :class:`~atomsets_tf.errors.MissingExtraError` saying that ``what`` needs the ``ase``
    extra."""
    try:
        import ase.io  # optional dependency (the ase extra): ASE-readable files and Atoms only
    except ImportError:
        raise MissingExtraError(f"{what} needs ASE: {ASE_HINT}") from None
    return ase.io


def structure_from_atoms(atoms, entry_id: str, source: str):
    """The pymatgen ``Structure`` of ASE ``atoms`` (through ``pymatgen.io.ase.AseAtomsAdaptor``).

    Raises:
        DataFormatError: ``atoms`` has no cell (a molecule) or cannot be converted, naming the entry.
        MissingExtraError: ASE is not installed.
    """
    import_ase_io()
    from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import; this module imports ASE

    if len(atoms) and abs(float(atoms.cell.volume)) < 1e-12:
        raise DataFormatError(f"{source}: entry {entry_id}: Atoms without a cell (a molecule?): the models need "
                              "a periodic structure")
    try:
        return AseAtomsAdaptor.get_structure(atoms)
    except Exception as exc:  # pymatgen and ASE raise many kinds
        raise DataFormatError(f"{source}: entry {entry_id}: cannot convert the Atoms to a structure ({exc})") from None


def atoms_values(atoms) -> dict:
    """What an ``Atoms`` object records about itself: its calculator's scalar results (``energy``, ...) and its
    ``info`` (which wins on a shared key)."""
    results = getattr(getattr(atoms, "calc", None), "results", None) or {}
    scalars = {k: v for k, v in results.items() if np.ndim(v) == 0}
    return {**scalars, **atoms.info}


def atoms_ids(frames, default: Callable[[int], str]) -> list[str]:
    """One id per ``Atoms``: ``info["id"]`` (or ``info["name"]``), else ``default(index)``."""
    ids = []
    for i, atoms in enumerate(frames):
        key = next((k for k in ATOMS_ID_KEYS if atoms.info.get(k) not in (None, "")), None)
        ids.append(str(atoms.info[key]) if key else default(i))
    return ids


def _is_number(value) -> bool:
    return isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating))


def atoms_targets(frames, target: str | None, source: str) -> tuple[list | None, str]:
    """``(targets_raw, target_name)`` of ``Atoms`` frames: ``atoms_values(atoms)[target]`` (missing: NaN), or,
    without ``target``, the one numeric key (not an id) that every frame has; ``None`` when there are several
    (pass ``target``) or none.

    Raises:
        DataFormatError: no frame has ``target``.
    """
    values = [atoms_values(atoms) for atoms in frames]
    if target is not None:
        if not any(target in v for v in values):
            keys = sorted(set().union(*values))
            raise DataFormatError(f"{source}: no target {target!r} in the Atoms' info or results "
                                  f"(keys: {', '.join(keys) or 'none'})")
        return [v.get(target) for v in values], target
    common = numeric_keys(frames)
    return ([v[common[0]] for v in values], common[0]) if len(common) == 1 else (None, "target")


def numeric_keys(frames) -> list[str]:
    """The numeric keys (not ids) that every frame's info or calculator results hold, sorted."""
    numeric = [set(k for k, x in atoms_values(atoms).items() if k not in ATOMS_ID_KEYS and _is_number(x))
               for atoms in frames]
    return sorted(set.intersection(*numeric)) if numeric else []


def _table_from_ase(path: Path, target: str | None = None) -> Table:
    """Every frame of an ASE-readable file (extxyz, xyz, traj): ids and target as :func:`atoms_ids` and
    :func:`atoms_targets` say, ids defaulting to ``<file stem>-<index>``."""
    ase_io = import_ase_io(f"reading {path}")
    try:
        frames = ase_io.read(path, index=":")
    except Exception as exc:  # ASE raises many kinds (XYZError, UnknownFileTypeError, ValueError, ...)
        raise DataFormatError(f"cannot read {path}: {exc}") from None
    frames = frames if isinstance(frames, list) else [frames]
    stem = path.name.split(".")[0]
    ids = atoms_ids(frames, lambda i: f"{stem}-{i}")
    structures = [structure_from_atoms(atoms, entry_id, str(path)) for atoms, entry_id in zip(frames, ids)]
    targets_raw, target_name = atoms_targets(frames, target, str(path))
    table = checked_table(ids, structures, targets_raw, target_name, str(path))
    if targets_raw is None:
        table.meta[TARGET_CANDIDATES] = numeric_keys(frames)
    return table


def input_labels(table: Table) -> list[str]:
    """:func:`input_label` of every entry; for a prepared dataset, the labels its manifest records (empty for
    a dataset prepared before they were)."""
    if table.prepared is not None:
        recorded = getattr(table.prepared, "inputs", None)
        return list(recorded) if recorded is not None else [""] * len(table)
    return [input_label(value) for value in table.inputs]


def _table_from_prepared(path: Path) -> Table:
    """The table of a prepared dataset (``atomsets-tf prepare``): its ids and targets; inputs are positions."""
    # Imported here: data.prepared imports TensorFlow, and this module must not (prepare's worker processes and
    # the synthetic sets of the benchmarks read structures through it).
    from atomsets_tf.data.prepared import PreparedDataset

    dataset = PreparedDataset.open(path)
    targets = None if dataset.targets is None else np.asarray(dataset.targets, dtype=np.float64)
    source = dataset.source if isinstance(dataset.source, dict) else {}
    meta = {"task": source["task"]} if source.get("task") else {}
    return Table(ids=list(dataset.ids), inputs=list(range(len(dataset))), targets=targets, kind="prepared",
                 target_name=str(source.get("target_name", "target")), source=str(path), meta=meta,
                 prepared=dataset)


def read_table(path: str | os.PathLike, target: str | None = None) -> Table:
    """Read a data set from a file or a folder.

    Accepts matbench-layout JSON (``.json`` or ``.json.gz``, pandas' 'split'
    orient), JSON holding a dict of parallel lists, CSV with an id column, a
    composition/formula column and a target column, a CIF file (every data block) or a POSCAR/CONTCAR file,
    folders of CIF/POSCAR files (ids are the file stems, no targets), prepared datasets
    (``atomsets-tf prepare``; see :class:`Table`), and ASE-readable files
    (:data:`ASE_SUFFIXES`: ``.extxyz``, ``.xyz``, ``.traj``; needs the ``ase`` extra): one entry per frame, its id
    ``atoms.info["id"]`` (or ``"name"``, else ``<file stem>-<index>``), its target ``atoms.info[target]`` (or the
    calculator's result, e.g. ``energy``), or without ``target`` the one numeric value every frame records
    (none when there are several).

    Raises:
        DataFormatError: a missing, corrupt or foreign file (naming it), or a bad entry (naming it).
        MissingExtraError: an ASE-readable file without ASE installed.
    """
    p = Path(path)
    if target is not None and (p.is_dir() or _is_structure_file(p)):
        raise DataFormatError(f"{p} holds no targets, so there is no target {target!r} to choose")
    if p.is_dir() and (p / MANIFEST).is_file():
        return _table_from_prepared(p)
    if p.is_dir():
        return _table_from_dir(p)
    if not p.is_file():
        raise DataFormatError(f"no such file or folder: {p}")
    name = p.name.lower()
    if name.endswith((".json", ".json.gz")):
        return _table_from_json(p, target=target)
    if name.endswith(".csv"):
        return _table_from_csv(p, target)
    if name.endswith(ASE_SUFFIXES):
        return _table_from_ase(p, target)
    if _is_structure_file(p):
        return _table_from_structure_file(p)
    raise DataFormatError(f"{p}: unknown data format (expected .json, .json.gz, .csv, {', '.join(ASE_SUFFIXES)}, "
                          "a CIF or POSCAR file, or a folder of them)")


def task_name(name: str) -> str:
    """Normalise ``"steels"`` or ``"matbench_steels"`` to ``"matbench_steels"``."""
    return name if name.startswith("matbench_") else f"matbench_{name}"


def resolve_task(name: str, compositional: bool = False) -> Path:
    """The local file of a matbench task.

    Looks in ``$ATOMSETS_TF_DATA``, the project's ``../shared/data/matbench``
    (the full file, then its ``formulas/`` CSV, which is the compositional
    version of a structure task) and, for ``matbench_steels``, the copy
    embedded in the package. With ``compositional``, formulas are preferred.

    Raises:
        DataFormatError: no local file for that task.
    """
    task = task_name(name)
    folders = []
    if os.environ.get(DATA_ENV):
        folders.append(Path(os.environ[DATA_ENV]))
    shared = shared_dir()
    if shared is not None:
        folders.append(shared / "data" / "matbench")
    full = [f / f"{task}.json.gz" for f in folders] + [f / f"{task}.json" for f in folders]
    formulas = [f / f"{task}.csv" for f in folders] + [f / "formulas" / f"{task}.csv" for f in folders]
    order = formulas + full if compositional else full + formulas
    if task == EMBEDDED_TASK:
        order.append(_RESOURCES / f"{EMBEDDED_TASK}.json.gz")
    for candidate in order:
        if candidate.is_file():
            return candidate
    if task not in TASKS:
        raise DataFormatError(f"{name!r} is not a Matbench task (they are {', '.join(sorted(TASKS))})")
    raise DataFormatError(
        f"no local data for task {task!r}: download {MATBENCH_URL.format(task=task)} (matbench's own file, which "
        f"matminer's load_dataset({task!r}, data_home=DIR) also fetches into DIR), keep it as DIR/{task}.json.gz "
        f"and set {DATA_ENV}=DIR; or pass a file path"
    )


def load(data: str | os.PathLike, target: str | None = None, compositional: bool = False) -> Table:
    """Read ``data``: a path or a matbench task name (see :func:`resolve_task`).

    A task name wins over a folder of the same name in the working directory
    (e.g. an output folder called ``matbench_jdft2d``) when the task has local data. Data already in memory (a
    pandas ``DataFrame``, ASE ``Atoms``, pymatgen objects, formula strings) is read by
    :func:`atomsets_tf.data.inputs.as_table`, which every function of the API that takes data calls.
    """
    if not isinstance(data, (str, os.PathLike)):
        raise DataFormatError(f"load reads a path or a task name, not a {type(data).__name__}: data in memory "
                              "goes through atomsets_tf.data.inputs.as_table")
    p = Path(data)
    if p.is_dir() and isinstance(data, str) and data.startswith("matbench_") and os.sep not in data:
        try:
            resolve_task(data, compositional)
        except DataFormatError:
            return read_table(p, target)
    elif p.exists():
        return read_table(p, target)
    if isinstance(data, str) and task_name(data) in TASKS:
        table = read_table(resolve_task(data, compositional), target)
        table.meta["task"] = task_name(data)
        return table
    formulas = formulas_given(data) if isinstance(data, str) else None
    if formulas is not None:
        ids = formulas if len(set(formulas)) == len(formulas) else [f"{k}:{f}" for k, f in enumerate(formulas)]
        return checked_table(ids, formulas, None, "target", "the formulas given")
    text = str(data)
    if os.sep in text or text.lower().endswith(DATA_SUFFIXES):
        raise DataFormatError(f"no such file or folder: {data}")
    if text.startswith("matbench_"):
        raise DataFormatError(f"no such file or folder, and {text!r} is not a Matbench task (they are "
                              f"{', '.join(sorted(TASKS))})")
    raise DataFormatError(f"no such file, folder, Matbench task or formula: {data} (formulas go as one argument, "
                          "comma-separated: 'Fe2O3,MgO')")


def formulas_given(text: str) -> list[str] | None:
    """The formulas of ``"Fe2O3"`` or ``"Fe2O3,MgO"`` (comma-separated, each a composition); ``None`` when any
    part is not one (a path, a typo): then ``load`` says so."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts) or any(os.sep in part for part in parts):
        return None
    try:
        for part in parts:
            composition_to_set(part)
    except AtomSetsError:
        return None
    return parts
