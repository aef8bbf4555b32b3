"""Train/validation/test splits: the official Matbench folds and random splits."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from atomsets_tf.data import io as data_io
from atomsets_tf.data.io import task_name
from atomsets_tf.errors import DataFormatError
from atomsets_tf.utils.io import shared_dir

_RESOURCES = Path(__file__).resolve().parent.parent / "resources"
VALIDATION_FILE = "matbench_v0.1_validation.json.gz"


def _validation_files() -> list[Path]:
    files = []
    try:
        spec = importlib.util.find_spec("matbench")
        if spec is not None and spec.origin:
            files.append(Path(spec.origin).parent / "matbench_v0.1_validation.json")
    except (ImportError, ValueError):
        pass
    shared = shared_dir()
    if shared is not None:
        files.append(shared / "data" / "matbench" / VALIDATION_FILE)
    files.append(_RESOURCES / "matbench_steels_folds.json.gz")
    return files


def official_folds(task: str) -> list[tuple[list[str], list[str]]]:
    """The official Matbench v0.1 folds of ``task``: five ``(train_ids, test_ids)``.

    Read from an installed matbench's ``matbench_v0.1_validation.json``, the
    project's ``../shared`` copy, or (for ``matbench_steels``) the embedded copy.

    Raises:
        DataFormatError: no split file that knows ``task``.
    """
    task = task_name(task)
    for f in _validation_files():
        if not f.is_file():
            continue
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as fh:
            splits = json.load(fh).get("splits", {})
        if task in splits:
            folds = splits[task]
            return [(list(folds[k]["train"]), list(folds[k]["test"])) for k in sorted(folds)]
    raise DataFormatError(f"no official Matbench folds found for {task!r} (install matbench, or use --protocol paper)")


#: ``Table.meta`` key set by :func:`as_task_subset`: the table holds some of its task's entries, and the
#: ``matbench`` protocol uses the official folds restricted to them.
TASK_SUBSET = "task_subset"


def subset_folds(task: str, ids: list[str], source: str = "the data") -> list[tuple[list[str], list[str]]]:
    """The official folds of ``task`` restricted to ``ids``: each ``(train ∩ ids, test ∩ ids)``, in the folds' order.

    Args:
        task: a Matbench v0.1 task name (``"perovskites"`` or ``"matbench_perovskites"``).
        ids: the entries present (some or all of the task's).
        source: the data's name, for messages.

    Returns:
        Five ``(train_ids, test_ids)``; the test parts are disjoint and together hold every id of ``ids``.

    Raises:
        DataFormatError: ``task`` has no official folds, or an id of ``ids`` is not one of its entries.
    """
    folds = official_folds(task)
    entries = set(folds[0][0]) | set(folds[0][1])
    unknown = [i for i in ids if i not in entries]
    if unknown:
        raise DataFormatError(f"{source}: {len(unknown)} ids are not entries of {task_name(task)}, "
                              f"e.g. {_some(unknown)}")
    present = set(ids)
    return [([i for i in train if i in present], [i for i in test if i in present]) for train, test in folds]


def as_task_subset(table: data_io.Table, task: str) -> data_io.Table:
    """``table`` marked as (a subset of) the entries of the Matbench task ``task``.

    Its ``matbench`` splits are then the official folds of ``task`` restricted to its ids
    (:func:`subset_folds`), and it is reported under the task's name.

    Returns:
        A shallow copy of ``table`` with ``meta["task"]`` and ``meta[TASK_SUBSET]`` set.

    Raises:
        DataFormatError: as :func:`subset_folds` (checked here, before anything trains).
    """
    subset_folds(task, table.ids, table.source or "the data")
    return replace(table, meta={**table.meta, "task": task_name(task), TASK_SUBSET: True})


def ids_to_indices(ids: list[str], wanted: list[str], what: str = "split") -> np.ndarray:
    """Positions of ``wanted`` ids in ``ids``; every id must be present, and listed once.

    Raises:
        DataFormatError: naming ``what`` (e.g. ``"split file s.json, 'train'"``) and the
            unknown or repeated ids.
    """
    if isinstance(wanted, (str, bytes)) or not all(isinstance(w, str) for w in wanted):
        raise DataFormatError(f"{what}: expected a list of id strings")
    where = {i: k for k, i in enumerate(ids)}
    missing = [w for w in wanted if w not in where]
    if missing:
        raise DataFormatError(f"{what}: {len(missing)} ids are not in the data, e.g. {_some(missing)}")
    repeated = _repeated(wanted)
    if repeated:
        raise DataFormatError(f"{what}: {len(repeated)} ids are listed more than once, e.g. {_some(repeated)}")
    return np.array([where[w] for w in wanted], dtype=np.int64)


def check_disjoint(parts: dict[str, list[str]], what: str = "split") -> None:
    """Refuse split parts (``{"train": ids, "val": ids, "test": ids}``) whose training part shares ids with another.

    An id in training and in the test (or validation) set makes that score
    meaningless. Validation and test may coincide (cross-validation scores on
    the part it leaves out).

    Raises:
        DataFormatError: naming ``what``, the two parts and the shared ids.
    """
    train = set(parts.get("train", ()))
    for name, ids in parts.items():
        shared = sorted(train & set(ids)) if name != "train" else []
        if shared:
            raise DataFormatError(f"{what}: train and {name} share {len(shared)} ids, e.g. {_some(shared)}; "
                                  "an id in training must not be scored")


def _repeated(values: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for v in values:
        if v in seen:
            repeated[v] = None
        seen.add(v)
    return list(repeated)


def _some(values: list[str], n: int = 3) -> str:
    """The first ``n`` of ``values``, quoted, for a message."""
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


def random_split(
    n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random train/validation/test split of ``range(n)`` (the paper's 80/10/10)."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    n_train = n - n_val - n_test
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def split_off_validation(train: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a validation part off training indices (for the Matbench protocol)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, int(round(fraction * len(train))))
    return np.sort(train[perm[n_val:]]), np.sort(train[perm[:n_val]])


PROTOCOLS = ("paper", "matbench")


def make_splits(
    table: data_io.Table,
    protocol: str = "paper",
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    split_file: str | os.PathLike | Mapping | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices.

    ``paper``: a random split drawn from ``seed + fold``, ``val_fraction`` each for
    validation and test (80/10/10 by default).
    ``matbench``: the official fold ``fold``; validation is ``val_fraction`` of its
    training part. For a table marked by :func:`as_task_subset`, the fold restricted to its ids.
    ``split_file`` (any protocol): a JSON file ``{"train": [ids], "val": [ids],
    "test": [ids]}``, or that mapping itself; without ``"val"``, validation is
    ``val_fraction`` of ``train``.
    """
    if not 0 < val_fraction < 0.5:
        raise DataFormatError(f"the validation fraction must be in (0, 0.5), got {val_fraction}")
    if split_file is not None:
        return _explicit_splits(table, split_file, val_fraction, seed)
    if protocol == "paper":
        return random_split(len(table), (1 - 2 * val_fraction, val_fraction, val_fraction), seed=seed + fold)
    if protocol == "matbench":
        task = table.meta.get("task") or Path(table.source).name.split(".")[0]
        if table.meta.get(TASK_SUBSET):
            folds = subset_folds(task, table.ids, table.source or "the data")
        else:
            folds = official_folds(task)
        if not 0 <= fold < len(folds):
            raise DataFormatError(f"fold must be in 0..{len(folds) - 1}, got {fold}")
        train_ids, test_ids = folds[fold]
        train, val = split_off_validation(ids_to_indices(table.ids, train_ids), val_fraction, seed=seed)
        return train, val, ids_to_indices(table.ids, test_ids)
    raise DataFormatError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _explicit_splits(table: data_io.Table, split_file, val_fraction: float, seed: int):
    """:func:`make_splits` of a split file (or mapping): every id known and listed once, training apart."""
    what = "the split" if isinstance(split_file, Mapping) else f"split file {split_file}"
    spec = split_file
    if not isinstance(split_file, Mapping):
        try:
            spec = json.loads(Path(split_file).read_text())
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{what}: expected JSON with 'train' and 'test' id lists ({exc})") from None
    if not isinstance(spec, Mapping) or not {"train", "test"} <= spec.keys():
        raise DataFormatError(f"{what}: expected JSON with 'train' and 'test' id lists (and optionally 'val')")
    names = [name for name in ("train", "val", "test") if name in spec]
    parts = {name: ids_to_indices(table.ids, spec[name], f"{what}, {name!r}") for name in names}
    check_disjoint({name: spec[name] for name in names}, what)
    if "val" in parts:
        return parts["train"], parts["val"], parts["test"]
    train, val = split_off_validation(parts["train"], val_fraction, seed=seed)
    return train, val, parts["test"]
