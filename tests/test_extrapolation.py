"""The extrapolation experiment: the split, the per-half errors, the outputs, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data.io import load
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.extrapolation import extrapolation, extrapolation_split, format_extrapolation
from atomsets_tf.training.trainer import TrainingConfig
from tests.test_cli import error_lines


@pytest.fixture(scope="module")
def steels():
    return load("matbench_steels")


def test_top_targets_are_only_in_the_test_set():
    ids = [f"e{k}" for k in range(100)]
    targets = np.random.default_rng(1).permutation(100).astype(float)  # the values 0..99, shuffled
    split = extrapolation_split(targets, ids, quantile=0.9, seed=0)
    by_id = dict(zip(ids, targets))
    assert sorted(by_id[i] for i in split["extrapolation"]) == list(range(90, 100))
    assert len(split["interpolation"]) == 10 and max(by_id[i] for i in split["interpolation"]) < 90
    assert split["test"] == split["interpolation"] + split["extrapolation"]
    seen = split["train"] + split["val"]
    assert len(seen) == 80 and len(split["val"]) == 8 and max(by_id[i] for i in seen) < 90
    assert len(set(seen) | set(split["test"])) == 100


def test_split_on_steels(steels):
    split = extrapolation_split(steels.targets, steels.ids, seed=2)
    by_id = dict(zip(steels.ids, steels.targets))
    assert split["threshold"] == pytest.approx(np.quantile(steels.targets, 0.9))
    top = {i for i, t in by_id.items() if t > split["threshold"]}
    assert set(split["extrapolation"]) == top and len(split["interpolation"]) == len(top)
    assert not top & set(split["train"] + split["val"] + split["interpolation"])
    assert extrapolation_split(steels.targets, steels.ids, seed=2) == split
    assert extrapolation_split(steels.targets, steels.ids, seed=3)["interpolation"] != split["interpolation"]


@pytest.mark.parametrize(
    "targets, quantile, message",
    [
        (np.arange(100.0), 0.3, "quantile must be in"),
        (np.ones(100), 0.9, "no target lies above"),
        (np.arange(3.0), 0.5, "too few entries"),
    ],
)
def test_bad_splits_are_refused(targets, quantile, message):
    with pytest.raises(AtomSetsError, match=message):
        extrapolation_split(targets, [str(k) for k in range(len(targets))], quantile)


def test_extrapolation_scores_each_half(steels, tmp_path):
    out = tmp_path / "ex"
    summary = extrapolation(steels, ["dummy", "atomsets"], out, training=TrainingConfig(epochs=1, batch_size=16))
    split = extrapolation_split(steels.targets, steels.ids)
    by_id = dict(zip(steels.ids, steels.targets))
    mean = np.mean([by_id[i] for i in split["train"]])  # what the dummy predicts
    dummy = summary["models"]["dummy"]
    assert dummy["mae_interpolation"] == pytest.approx(np.mean([abs(by_id[i] - mean) for i in split["interpolation"]]))
    assert dummy["mae_extrapolation"] == pytest.approx(np.mean([abs(by_id[i] - mean) for i in split["extrapolation"]]))
    for record in summary["models"].values():  # two halves of equal size: the test MAE is their mean
        assert record["mae_test"] == pytest.approx((record["mae_interpolation"] + record["mae_extrapolation"]) / 2)
    assert summary["models"]["atomsets"]["epochs_run"] == 1
    on_disk = json.loads((out / "extrapolation.json").read_text())
    assert on_disk["n_extrapolation"] == on_disk["n_interpolation"] == len(split["extrapolation"])
    assert on_disk["unit"] == "MPa" and on_disk["threshold"] == pytest.approx(split["threshold"])
    assert (out / "extrapolation.png").stat().st_size > 1000
    assert "MAE extrapolation (MPa)" in format_extrapolation(summary)


def test_cli_extrapolation(tmp_path, capsys):
    code = main(["extrapolation", "matbench_steels", "--model", "dummy", "--quantile", "0.8", "-o", str(tmp_path)])
    stdout = capsys.readouterr().out
    assert code == 0 and "MAE interpolation" in stdout and "Wrote" in stdout
    targets = load("matbench_steels").targets
    expected = int(np.sum(targets > np.quantile(targets, 0.8)))
    assert 62 <= expected <= 63 and json.loads((tmp_path / "extrapolation.json").read_text())["n_extrapolation"] == expected


def test_cli_refuses_classification(tmp_path, capsys):
    path = tmp_path / "metal.csv"
    path.write_text("id,composition,is_metal\n" + "".join(f"m{k},Fe{k + 1}O,{k % 2}\n" for k in range(40)))
    code = main(["extrapolation", str(path), "--model", "dummy", "-o", str(tmp_path / "o")])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "needs a regression task" in lines[0]
    assert not (tmp_path / "o").exists()
