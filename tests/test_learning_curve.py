"""Learning curves: the power-law fit, the nested subsets on a fixed test set, the outputs, resuming, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data.io import load
from atomsets_tf.data.splits import official_folds
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation import common
from atomsets_tf.evaluation import learning_curve as lc
from atomsets_tf.evaluation.learning_curve import (
    PowerLawFit,
    default_sizes,
    fit_power_law,
    format_learning_curve,
    learning_curve,
    nested_splits,
)
from atomsets_tf.training.trainer import TrainingConfig
from tests.test_cli import error_lines

# Noisy points of a decreasing curve, in log10 space: x = log10 N, y = log10 error.
NOISY_N = [100, 200, 400, 800, 1600]
NOISY_E = [52.0, 41.0, 27.5, 22.0, 14.0]


@pytest.fixture(scope="module")
def steels():
    return load("matbench_steels")


def test_fit_recovers_an_exact_power_law():
    sizes = np.array([100, 200, 400, 800, 3000])
    fit = fit_power_law(sizes, 3000.0 * sizes**-0.4)
    assert fit.slope == pytest.approx(-0.4, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log10(3000.0), abs=1e-12)
    assert fit.slope_std == pytest.approx(0.0, abs=1e-10) and fit.n_points == 5
    assert fit.predict(10_000) == pytest.approx(3000.0 * 10_000**-0.4, rel=1e-10)


def test_fit_uncertainty_matches_textbook_formulas():
    # Independent: the closed-form simple-regression standard errors, not a matrix inverse.
    x, y = np.log10(NOISY_N), np.log10(NOISY_E)
    n = len(x)
    sxx = np.sum((x - x.mean()) ** 2)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / sxx
    intercept = y.mean() - slope * x.mean()
    s2 = np.sum((y - intercept - slope * x) ** 2) / (n - 2)
    fit = fit_power_law(NOISY_N, NOISY_E)
    assert fit.slope == pytest.approx(slope, rel=1e-10) and fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.slope_std == pytest.approx(math.sqrt(s2 / sxx), rel=1e-8)
    assert fit.intercept_std == pytest.approx(math.sqrt(s2 * (1 / n + x.mean() ** 2 / sxx)), rel=1e-8)
    assert fit.covariance[0][1] == pytest.approx(-x.mean() * s2 / sxx, rel=1e-8)


def test_two_points_fit_without_uncertainty_and_bad_input_is_refused():
    fit = fit_power_law([100, 400], [10.0, 5.0])
    assert fit.slope == pytest.approx(-0.5) and math.isnan(fit.slope_std)
    record = fit.to_dict()
    assert record["slope_std"] is None and json.dumps(record)  # valid JSON, no NaN
    assert math.isnan(PowerLawFit.from_dict(record).intercept_std)
    n, low, high = fit.n_for(2.5)
    assert n == pytest.approx(1600) and math.isnan(low) and math.isnan(high)
    for sizes, errors in [([100], [1.0]), ([100, 100], [1.0, 2.0]), ([100, 200], [1.0, 0.0]), ([1, 2], [1.0])]:
        with pytest.raises(AtomSetsError):
            fit_power_law(sizes, errors)


def test_n_for_inverts_predict_and_its_interval_matches_monte_carlo():
    fit = fit_power_law(NOISY_N, NOISY_E)
    target = fit.predict(5000)
    n, low, high = fit.n_for(target)
    assert n == pytest.approx(5000, rel=1e-9) and low < n < high
    # Independent: sample (slope, intercept) from their covariance and invert for each sample.
    rng = np.random.default_rng(0)
    cov = np.asarray(fit.covariance) * 1e-4  # a small covariance, where first-order propagation holds
    samples = rng.multivariate_normal([fit.slope, fit.intercept], cov, size=40_000)
    log_n = (math.log10(target) - samples[:, 1]) / samples[:, 0]
    narrow = PowerLawFit(fit.slope, fit.intercept, 0.0, 0.0, cov, fit.n_points)
    _, low, high = narrow.n_for(target)
    assert (math.log10(high) - math.log10(low)) / 2 == pytest.approx(np.std(log_n), rel=0.03)


def test_n_for_refuses_a_curve_that_does_not_decrease():
    fit = fit_power_law([100, 200, 400], [10.0, 10.5, 11.0])
    with pytest.raises(AtomSetsError, match="does not decrease"):
        fit.n_for(5.0)


def test_default_sizes():
    assert default_sizes(249) == [100, 200, 249]
    assert default_sizes(1000) == [100, 200, 400, 800, 1000]
    assert default_sizes(200) == [100, 200]
    assert default_sizes(50) == [50]


@pytest.mark.parametrize("protocol", ["matbench", "paper"])
def test_subsets_are_nested_on_a_fixed_test_set(steels, protocol):
    splits = nested_splits(steels, [10, 100, 40], protocol, fold=1, seed=3)
    assert list(splits) == [10, 40, 100]
    test = set(splits[10]["test"])
    if protocol == "matbench":
        assert test == set(official_folds("matbench_steels")[1][1])
    else:
        assert len(test) == round(0.1 * len(steels))
    previous: set = set()
    for n, split in splits.items():
        assert set(split["test"]) == test
        seen = set(split["train"]) | set(split["val"])
        assert len(seen) == n and not seen & test
        assert len(split["val"]) == max(1, round(0.1 * n))
        assert previous <= seen
        previous = seen
    assert nested_splits(steels, [10, 40], protocol, fold=1, seed=3)[40] == splits[40]  # reproducible
    assert nested_splits(steels, [40], protocol, fold=1, seed=4)[40]["train"] != splits[40]["train"]


def test_sizes_outside_the_pool_are_refused(steels):
    for sizes in ([1, 10], [10, 10_000]):
        with pytest.raises(AtomSetsError, match="data sizes must be between 2 and"):
            nested_splits(steels, sizes)


def test_learning_curve_writes_json_png_and_resumes(steels, tmp_path, monkeypatch):
    out = tmp_path / "lc"
    lines = []
    summary = learning_curve(steels, ["dummy", "atomsets"], out, sizes=[20, 40, 80],
                             training=TrainingConfig(epochs=1, batch_size=16), seed=0, target=150.0,
                             report=lines.append)
    assert (out / "learning_curve.png").stat().st_size > 1000
    on_disk = json.loads((out / "learning_curve.json").read_text())
    assert on_disk["sizes"] == [20, 40, 80] and on_disk["unit"] == "MPa" and on_disk["reference_model"] == "dummy"
    assert len(lines) == 6
    dummy, atomsets = (on_disk["models"][m]["points"] for m in ("dummy", "atomsets"))
    for p, q in zip(dummy, atomsets):
        assert p["n"] == q["n"] and p["n_train"] + p["n_val"] == p["n"] and q["epochs_run"] == 1
        gain = on_disk["improvement_over_first"]["atomsets"][str(p["n"])]
        assert gain == pytest.approx(100 * (p["test_mae"] - q["test_mae"]) / p["test_mae"])
    fit = on_disk["models"]["atomsets"]["fit"]
    expected = np.polyfit(np.log10([20, 40, 80]), np.log10([q["test_mae"] for q in atomsets]), 1)
    assert [fit["slope"], fit["intercept"]] == pytest.approx(list(expected))
    assert "n_for_target" in on_disk["models"]["atomsets"]
    test_ids = json.loads((out / "atomsets" / "n_80" / "split.json").read_text())["test"]
    train_ids = json.loads((out / "atomsets" / "n_80" / "split.json").read_text())["train"]
    assert not set(test_ids) & set(train_ids) and len(test_ids) == summary["n_test"]
    text = format_learning_curve(summary)
    assert "% atomsets vs dummy" in text and "log10(MAE)" in text

    # A rerun trains nothing: every point is read back.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(common, "run_model", no_training)  # train_on_split lives in evaluation.common
    again = learning_curve(steels, ["dummy", "atomsets"], out, sizes=[20, 40, 80],
                           training=TrainingConfig(epochs=1, batch_size=16), seed=0, target=150.0)
    assert again["models"] == summary["models"]
    # Other ids in the same folder are refused, not silently mixed.
    with pytest.raises(AtomSetsError, match="other ids"):
        learning_curve(steels, ["dummy"], out, sizes=[20], seed=1)


def test_classification_is_drawn_as_one_minus_auc(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    metals = ["Fe", "Ni", "Co", "Cu", "Al", "Ti"]
    path = tmp_path / "metal.csv"
    rows = [f"m{k},{rng.choice(metals)}{rng.uniform(0.1, 0.9):.2f}O{rng.uniform(0.1, 0.9):.2f},{k % 2}"
            for k in range(100)]
    path.write_text("id,composition,is_metal\n" + "\n".join(rows) + "\n")
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)  # no matplotlib: no PNG
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        summary = learning_curve(str(path), ["dummy"], tmp_path / "out", sizes=[20, 40], protocol="paper")
    assert summary["error"] == "1-roc_auc" and summary["unit"] is None
    for p in summary["models"]["dummy"]["points"]:
        assert p["error"] == pytest.approx(1 - p["test_roc_auc"])
    assert not (tmp_path / "out" / "learning_curve.png").exists()
    assert lc.error_label(summary["task"], "classification") == "1 − test ROC-AUC"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sizes", "100,abc"], "sizes must be comma-separated whole numbers"),
        (["--sizes", "100,5000"], "data sizes must be between 2 and the 249 entries"),
        (["--goal", "0"], "is not in the range x>0"),
    ],
)
def test_cli_bad_input_gives_one_error_line(tmp_path, capsys, extra, message):
    code = main(["learning-curve", "matbench_steels", "--model", "dummy", *extra, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_cli_learning_curve(tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["learning-curve", "matbench_steels", "--model", "dummy", "--sizes", "30,60,120", "--goal", "100",
                 "-o", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "MAE dummy" in stdout and "Wrote" in stdout and "matbench_steels dummy N=120" in stdout
    summary = json.loads((out / "learning_curve.json").read_text())
    assert summary["command"].startswith("atomsets-tf learning-curve matbench_steels")
    assert summary["training"]["batch_size"] == 16
