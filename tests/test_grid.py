"""``atomsets-tf grid``: Table S2, cross-validation on training data only, the best configuration's command."""

from __future__ import annotations

import json
import shlex

import pytest

from atomsets_tf.cli import main
from atomsets_tf.data.splits import official_folds
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.grid import ATOMSETS_GRID, MLP_GRID, cv_splits, grid_configs


def test_table_s2_sizes_and_sampling():
    assert len(grid_configs("atomsets-v0")) == 3 * 2 * 4 * 2 * 2 == 96
    assert len(grid_configs("mlp-f")) == 5 * 4 * 2
    sample = grid_configs("atomsets", max_configs=7, seed=3)
    assert len(sample) == 7 and sample == grid_configs("atomsets", max_configs=7, seed=3)
    assert sample != grid_configs("atomsets", max_configs=7, seed=4)
    # a larger sample extends a smaller one, under the same grid indices
    larger = grid_configs("atomsets", max_configs=12, seed=3)
    assert all(larger[i] == c for i, c in sample.items())
    assert {c.units for c in grid_configs("atomsets").values()} == set(ATOMSETS_GRID["units"])
    assert ({c.n_layers_after_readout for c in grid_configs("mlp-u1").values()}
            == set(MLP_GRID["n_layers_after_readout"]))
    with pytest.raises(AtomSetsError, match="no grid for megnet"):
        grid_configs("megnet")


def test_cv_splits_validate_every_id_once():
    ids = [f"x{i}" for i in range(23)]
    splits = cv_splits(ids, 5, seed=1)
    seen = [i for s in splits for i in s["val"]]
    assert sorted(seen) == sorted(ids)
    for s in splits:
        assert not set(s["train"]) & set(s["val"]) and len(s["train"]) + len(s["val"]) == 23
    with pytest.raises(AtomSetsError, match="too few entries"):
        cv_splits(ids[:5], 5)


def test_grid_searches_the_fold_training_part_and_names_the_best(tmp_path, capsys):
    out = tmp_path / "grid"
    code = main(["grid", "matbench_steels", "--model", "atomsets-v0", "--fold", "1", "--cv-folds", "2",
                 "--max-configs", "2", "--epochs", "2", "-o", str(out)])
    assert code == 0
    record = json.loads((out / "grid.json").read_text())
    assert record["n_configs"] == 2 and record["n_grid"] == 96 and record["cv_folds"] == 2
    train_ids, test_ids = official_folds("matbench_steels")[1]
    assert record["n_pool"] == len(train_ids)
    # no official test entry of the fold was used by the search
    for k in (0, 1):
        first = f"config_{record['results'][0]['grid_index']:02d}"
        metrics = json.loads((out / first / f"cv_{k}" / "metrics.json").read_text())
        assert metrics["n_train"] + metrics["n_val"] == len(train_ids)
        assert metrics["val_mae"] == metrics["test_mae"]
    means = [r["mean"] for r in record["results"]]
    assert record["best"]["mean"] == min(means)
    args = shlex.split(record["benchmark_command"])
    assert args[:5] == ["atomsets-tf", "benchmark", "matbench_steels", "--model", "atomsets-v0"]
    assert args[args.index("--units") + 1] == str(record["best"]["config"]["units"])
    assert "best of 2/96" in capsys.readouterr().out
