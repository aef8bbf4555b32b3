"""Official Matbench folds restricted to a file that holds some of a task's entries (``benchmark --task``)."""

import gzip
import json

import numpy as np
import pytest

from atomsets_tf.data.io import Table
from atomsets_tf.data.splits import as_task_subset, make_splits, official_folds
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.utils.io import shared_dir

TASK = "matbench_perovskites"


def _folds_or_skip():
    try:
        return official_folds(TASK)
    except AtomSetsError:
        pytest.skip(f"no official folds of {TASK} here")


def _subset_table(ids: list[str]) -> Table:
    """A stand-in for the subset file: only ids and targets matter to the splits."""
    return Table(ids=ids, inputs=["CaTiO3"] * len(ids), targets=np.zeros(len(ids)), kind="composition",
                 source="matbench_perovskites_val_subset.json.gz")


def _subset_ids(folds) -> list[str]:
    """The shared subset file's ids, else a seeded sample of the task's ids."""
    path = None if shared_dir() is None else shared_dir() / "data/structures/matbench_perovskites_val_subset.json.gz"
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as fh:
            return list(json.load(fh)["index"])
    everything = sorted(set(folds[0][0]) | set(folds[0][1]))
    return [everything[i] for i in np.random.default_rng(0).choice(len(everything), 500, replace=False)]


def test_subset_folds_are_the_official_test_folds_restricted_to_the_subset():
    folds = _folds_or_skip()
    ids = _subset_ids(folds)
    table = as_task_subset(_subset_table(ids), "perovskites")
    assert table.meta["task"] == TASK
    tests = []
    for fold, (_, official_test) in enumerate(folds):
        train, val, test = make_splits(table, "matbench", fold)
        test_ids = {table.ids[i] for i in test}
        assert test_ids == set(official_test) & set(ids)
        parts = [set(train), set(val), set(test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] == set(range(len(ids)))  # the fold's train ∪ test is the subset
        tests.append(test_ids)
    assert sum(len(t) for t in tests) == len(ids) and set().union(*tests) == set(ids)  # disjoint, covering


def test_ids_outside_the_task_are_refused():
    folds = _folds_or_skip()
    ids = sorted(folds[0][1])[:20] + ["not-a-perovskite"]
    with pytest.raises(AtomSetsError, match=r"matbench_perovskites_val_subset.*not entries of matbench_perovskites"
                                            r".*not-a-perovskite"):
        as_task_subset(_subset_table(ids), TASK)


def test_without_the_mark_a_subset_is_refused_by_the_full_folds():
    folds = _folds_or_skip()
    table = _subset_table(sorted(folds[0][1])[:20])
    table.meta["task"] = TASK
    with pytest.raises(AtomSetsError, match="ids are not in the data"):
        make_splits(table, "matbench", 0)


def _write_csv(path, ids: list[str], targets) -> None:
    path.write_text("id,composition,e_form\n" + "".join(f"{i},CaTiO3,{t}\n" for i, t in zip(ids, targets)))


def test_benchmark_task_option_runs_the_subset_folds_and_refuses_foreign_ids(tmp_path, capsys):
    from atomsets_tf.cli import main  # imports TensorFlow: only this test needs it

    folds = _folds_or_skip()
    ids = [i for k, (_, test) in enumerate(folds) for i in sorted(test)[: 6 + 2 * k]]  # 6, 8, ... per fold
    data = tmp_path / "subset.csv"
    _write_csv(data, ids, np.arange(len(ids)) / 10)
    out = tmp_path / "out"
    assert main(["benchmark", str(data), "--model", "dummy", "--task", TASK, "--quiet", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == TASK and summary["subset"]["n_entries"] == len(ids)
    assert [f["n_test"] for f in summary["folds"]] == [len(set(t) & set(ids)) for _, t in folds]
    assert summary["paper_units"]["mean"] == pytest.approx(summary["mean"] * 200)  # eV per 5-atom cell -> meV/atom
    _write_csv(data, ids + ["mb-perovskites-xx"], np.zeros(len(ids) + 1))
    capsys.readouterr()
    assert main(["benchmark", str(data), "--model", "dummy", "--task", TASK, "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "subset.csv" in err[0] and "mb-perovskites-xx" in err[0]
