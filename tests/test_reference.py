"""Consistency of the published reference numbers in :mod:`atomsets_tf.evaluation.reference`."""

from __future__ import annotations

import json
import math

import pytest

from atomsets_tf.evaluation import reference as ref
from atomsets_tf.utils.io import shared_dir

SHARED = shared_dir()
METADATA = None if SHARED is None else SHARED / "data" / "matbench" / "matbench_v0.1_dataset_metadata.json"
TABLES = {"table2": ref.PAPER_TABLE2, "tableS3": ref.PAPER_TABLE_S3, "tableS4": ref.PAPER_TABLE_S4}


def test_tasks_complete_and_consistent():
    assert len(ref.TASKS) == 13
    for task, spec in ref.TASKS.items():
        assert spec["metric"] == ("roc_auc" if spec["task_type"] == "classification" else "mae"), task
        assert spec["paper_factor"] > 0
        if spec["metric"] == "roc_auc":
            assert spec["paper_factor"] == 1.0 and spec["paper_unit"] is None
    for table in (*TABLES.values(), ref.MATBENCH_LEADERBOARD):
        assert set(table) == set(ref.TASKS)


@pytest.mark.skipif(METADATA is None or not METADATA.is_file(), reason="matbench metadata not available")
def test_tasks_match_matbench_metadata():
    meta = json.loads(METADATA.read_text())
    assert set(meta) == set(ref.TASKS)
    for task, spec in ref.TASKS.items():
        for key in ("n_samples", "task_type", "input_type"):
            assert spec[key] == meta[task][key], (task, key)
        assert spec["matbench_unit"] == meta[task]["unit"]
        for key in ("mad", "frac_true"):
            if key in meta[task]:
                assert spec[key] == meta[task][key]


def test_to_paper_units_known_factors_and_round_trip():
    assert ref.to_paper_units("matbench_mp_e_form", 0.033) == pytest.approx(33.0)
    assert ref.to_paper_units("matbench_perovskites", 0.0417) == pytest.approx(8.34)
    assert ref.to_paper_units("matbench_steels", 90.0) == 90.0
    assert ref.to_paper_units("matbench_glass", 0.92) == 0.92
    for task in ref.TASKS:
        assert ref.from_paper_units(task, ref.to_paper_units(task, 1.2345)) == pytest.approx(1.2345)
    with pytest.raises(KeyError):
        ref.to_paper_units("not_a_task", 1.0)


def test_dummy_column_confirms_unit_conversion():
    """The paper's dummy (predict the mean) MAE is matbench's MAD once converted to the paper's units."""
    for task, spec in ref.TASKS.items():
        dummy, _ = ref.PAPER_TABLE_S4[task]["dummy"]
        if spec["metric"] == "mae":
            assert ref.to_paper_units(task, spec["mad"]) == pytest.approx(dummy, rel=0.02), task  # paper rounds to 2-3 digits
        else:
            assert dummy == 0.5


def test_paper_tables_well_formed():
    models = {"table2": {"atomsets", "atomsets-v0", "atomsets-v1", "atomsets-v2", "atomsets-v3", "mlp-f",
                         "megnet", "automatminer"},
              "tableS3": {"atomsets-v0+", "atomsets-v1+"},
              "tableS4": {"mlp-v0-stats", "mlp-u1", "mlp-u2", "mlp-u3", "mlp-v_r", "dummy"}}
    for name, table in TABLES.items():
        for task, row in table.items():
            assert set(row) <= models[name], (name, task)
            for model, (mean, std) in row.items():
                assert mean > 0 and (std is None or std >= 0), (name, task, model)
                if ref.TASKS[task]["metric"] == "roc_auc":
                    assert mean <= 1.0
                # quoted single numbers are exactly the other-paper columns
                assert (std is None) == (model in {"megnet", "automatminer", "dummy"}), (name, task, model)
        # compositional tasks have no structural models
        for task, spec in ref.TASKS.items():
            if spec["input_type"] == "composition":
                assert not {"atomsets-v1", "atomsets-v1+", "mlp-u1", "mlp-f", "megnet"} & set(table[task])


def test_reference_row():
    assert ref.reference_row("matbench_steels", "atomsets-v0") == {
        "paper_mean": 90, "paper_std": 25, "paper_table": "table2"}
    assert ref.reference_row("matbench_steels", "atomsets-v1") is None
    assert ref.reference_row("matbench_mp_e_form", "mlp-f") == {
        "paper_mean": 17, "paper_std": 0, "paper_table": "table2"}
    assert ref.reference_row("matbench_jdft2d", "atomsets-v0+")["paper_table"] == "tableS3"
    assert ref.reference_row("matbench_phonons", "dummy") == {
        "paper_mean": 324, "paper_std": None, "paper_table": "tableS4"}
    assert ref.reference_row("matbench_mp_is_metal", "megnet")["paper_mean"] == 0.98
    assert ref.reference_row("my_own_data.csv", "atomsets") is None


def test_cgat_table1_percentages_match_maes():
    table1 = ref.CGAT_PAPER["table1"]
    assert set(table1) == {"e_hull", "e_form", "volume", "band_gap"}
    n = 0
    for prop, row in table1.items():
        for functional in ("pbesol", "scan"):
            if functional not in row:
                continue
            base = row[functional]["no_transfer"]
            for method in ("regression_head", "full_transfer"):
                cell = row[functional][method]
                assert 100 * (1 - cell["mae"] / base) == pytest.approx(cell["improvement_pct"], abs=1.0), (
                    prop, functional, method)
                n += 1
    assert n == 12


def test_leaderboard_entries():
    for task, entry in ref.MATBENCH_LEADERBOARD.items():
        best, gp = entry["best"], entry["best_general_purpose"]
        assert best["mean"] is not None and best["std"] >= 0
        # the overall best is at least as good as the best general-purpose algorithm
        if ref.TASKS[task]["metric"] == "mae":
            assert best["mean"] <= gp["mean"] < ref.TASKS[task]["mad"]
        else:
            assert 0.5 < gp["mean"] <= best["mean"] <= 1.0
        assert len(entry["commit"]) == 40
        assert ref.leaderboard_source(task).endswith(f"matbench_v0.1_{task}.md")
    assert not math.isnan(ref.MATBENCH_LEADERBOARD["matbench_mp_e_form"]["best"]["mean"])
