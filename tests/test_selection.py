"""Nested selection: candidates are compared on each official fold's training part only."""

from __future__ import annotations

import json

from atomsets_tf.data.splits import official_folds
from atomsets_tf.evaluation.selection import nested_selection
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig


def test_nested_selection_never_sees_the_test_fold(tmp_path):
    candidates = {"linear": ModelConfig(output="linear", units=8), "non-negative": ModelConfig(units=8)}
    record = nested_selection("matbench_steels", "atomsets-v0", candidates, tmp_path, folds=[0], cv_folds=2,
                              budget_epochs=2, training=TrainingConfig(epochs=2, patience=2, batch_size=64))
    (row,) = record["folds"]
    assert row["chosen"] == min(row["inner_cv_all"], key=row["inner_cv_all"].get)
    train_ids, test_ids = (set(part) for part in official_folds("matbench_steels")[0])
    inner_runs = list((tmp_path / "fold_0" / "selection").glob("config_*/cv_*/metrics.json"))
    assert len(inner_runs) == 4
    seen = set()
    for path in inner_runs:
        seen |= {line.split(",")[0] for line in (path.parent / "test_predictions.csv").read_text().splitlines()[1:]}
    assert seen and seen <= train_ids and not seen & test_ids
    final = json.loads((tmp_path / "fold_0" / "final" / "metrics.json").read_text())
    assert final["n_test"] == len(test_ids) and json.loads((tmp_path / "selection.json").read_text())["folds"]
