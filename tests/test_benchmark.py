"""``atomsets-tf benchmark``: the Matbench protocol over folds, summary.json, resuming, the dummy model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atomsets_tf.cli import BENCHMARK_MODELS, main
from atomsets_tf.data.io import load
from atomsets_tf.data.splits import official_folds
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.protocol import default_batch_size, default_training, run_benchmark
from atomsets_tf.evaluation.runners import benchmark_models, fit_dummy
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig


def test_cli_lists_every_benchmark_model():
    assert list(BENCHMARK_MODELS) == list(benchmark_models())


def test_dummy_predicts_the_training_mean_on_the_official_fold():
    table = load("matbench_steels")
    result = fit_dummy(table, "matbench", fold=2)
    train_ids, test_ids = official_folds("matbench_steels")[2]
    assert result.test_ids == test_ids
    # validation is taken from the training part, so the mean is over the remaining 90 % of it
    assert result.metrics["n_train"] + result.metrics["n_val"] == len(train_ids)
    by_id = dict(zip(table.ids, table.targets))
    test = np.array([by_id[i] for i in test_ids])
    constant = result.metrics["constant"]
    assert result.metrics["test_mae"] == pytest.approx(np.mean(np.abs(test - constant)))
    assert np.mean([by_id[i] for i in train_ids]) == pytest.approx(constant, rel=0.05)


def test_dummy_classifier_has_chance_auc(tmp_path):
    from tests._tables import learnable_table

    table = learnable_table(80)
    table.targets = (table.targets > np.median(table.targets)).astype(float)
    result = fit_dummy(table, "paper", fold=0)
    assert result.metrics["test_roc_auc"] == 0.5 and result.metrics["constant"] in (0.0, 1.0)


def test_benchmark_summary_and_resume(tmp_path, capsys):
    out = tmp_path / "steels"
    code = main(["benchmark", "matbench_steels", "--model", "atomsets", "--folds", "0,1", "--epochs", "2",
                 "--units", "8", "-o", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["fold"] for r in summary["folds"]] == [0, 1]
    assert summary["task"] == "matbench_steels" and summary["metric"] == "mae" and summary["budget_epochs"] == 2
    assert all(r["epochs_run"] == 2 for r in summary["folds"])
    values = [r["test"] for r in summary["folds"]]
    assert summary["mean"] == pytest.approx(np.mean(values)) and summary["std"] == pytest.approx(np.std(values))
    assert summary["command"].startswith("atomsets-tf benchmark matbench_steels --model atomsets")
    assert summary["reference"]["paper_mean"] == 109 and summary["training"]["batch_size"] == 16
    assert {"tensorflow", "keras", "atomsets_tf"} <= summary["versions"].keys()
    for fold in (0, 1):
        metrics = json.loads((out / f"fold_{fold}" / "metrics.json").read_text())
        assert metrics["fold"] == fold and metrics["training"]["seed"] == fold
        assert (out / f"fold_{fold}" / "model.keras").is_file()
    assert "mae" in capsys.readouterr().out

    # A rerun reads finished folds back instead of training them again.
    marker = out / "fold_0" / "metrics.json"
    stamp = marker.stat().st_mtime_ns
    summary2 = run_benchmark("matbench_steels", "atomsets", out, folds=[0, 1],
                             training=TrainingConfig(epochs=2, batch_size=16), model_config=ModelConfig(units=8))
    assert marker.stat().st_mtime_ns == stamp and summary2["folds"] == summary["folds"]


def test_budget_caps_epochs_and_batch_sizes_follow_the_data_size():
    assert default_training(300, budget_epochs=20).epochs == 20
    assert default_training(300).epochs == 1000 and default_training(300).patience == 200
    assert [default_batch_size(n) for n in (312, 4604, 132752)] == [16, 128, 512]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "dummy", "--folds", "0,7"], "folds must be in 0..4"),
        (["--model", "dummy", "--folds", "zero"], "expected comma-separated fold numbers"),
        (["--model", "megnet"], "needs structures"),
    ],
)
def test_benchmark_bad_input_is_one_error_line(tmp_path, capsys, args, message):
    assert main(["benchmark", "matbench_steels", *args, "-o", str(tmp_path / "o")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and message in err[0], err


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(AtomSetsError, match="unknown model"):
        run_benchmark("matbench_steels", "atomsets-v9", tmp_path / "unused")
    assert not (tmp_path / "unused").exists()


def _matbench_installed() -> bool:
    try:
        import matbench.bench  # noqa: F401  (optional: installed by the README's test command and .ci/run)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _matbench_installed(), reason="matbench is not installed (pip install matminer; "
                    "pip install --no-deps matbench==0.6): the stand-in test below covers our side")
def test_benchmark_to_file_from_file_round_trip_with_the_real_matbench(tmp_path):
    """What ``benchmark`` writes is a file the real matbench reads back, validates and scores as we do."""
    from matbench.bench import MatbenchBenchmark

    out = tmp_path / "dummy"
    summary = run_benchmark("matbench_steels", "dummy", out)
    assert summary["matbench_results"] == "matbench_results.json.gz"
    back = MatbenchBenchmark.from_file(str(out / "matbench_results.json.gz"))
    assert back.validate() == {} and back.is_recorded
    task = back.tasks_map["matbench_steels"]
    ours = [json.loads((out / f"fold_{k}" / "metrics.json").read_text())["test_mae"] for k in range(5)]
    theirs = [task.results[f"fold_{k}"]["scores"]["mae"] for k in range(5)]
    assert theirs == pytest.approx(ours, rel=1e-9)  # the same test ids in every fold, scored alike
    assert task.scores["mae"]["mean"] == pytest.approx(summary["mean"], rel=1e-9)


@pytest.mark.skipif(not _matbench_installed(), reason="matbench is not installed")
def test_an_ensembles_std_is_recorded_as_matbench_uncertainty(tmp_path):
    from matbench.bench import MatbenchBenchmark

    from atomsets_tf.evaluation.protocol import write_matbench_results

    out = tmp_path / "dummy"
    run_benchmark("matbench_steels", "dummy", out)
    for k in range(5):  # give each fold's predictions an ensemble's std column
        path = out / f"fold_{k}" / "test_predictions.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0] + ",std", *(f"{ln},{1.5 + k}" for ln in lines[1:])]) + "\n")
    written = write_matbench_results(load("matbench_steels"), out)
    task = MatbenchBenchmark.from_file(str(written)).tasks_map["matbench_steels"]
    assert task.validate() is None
    uncertainty = task.results["fold_3"]["uncertainty"]
    assert {uncertainty[i]["std"] for i in official_folds("matbench_steels")[3][1]} == {4.5}


@pytest.mark.skipif(not _matbench_installed(), reason="matbench is not installed")
def test_an_ensemble_classifiers_results_are_recorded_without_std(tmp_path, shared):
    """matbench refuses an uncertainty on a classification task: the probabilities are recorded alone."""
    from matbench.bench import MatbenchBenchmark

    from atomsets_tf.evaluation.protocol import write_matbench_results

    out = tmp_path / "dummy"
    run_benchmark("matbench_glass", "dummy", out)
    for k in range(5):  # an ensemble classifier's test_predictions.csv has a std column too
        path = out / f"fold_{k}" / "test_predictions.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0] + ",std", *(f"{ln},0.1" for ln in lines[1:])]) + "\n")
    written = write_matbench_results(load("matbench_glass"), out)
    assert written is not None
    task = MatbenchBenchmark.from_file(str(written)).tasks_map["matbench_glass"]
    assert task.validate() is None and 0.0 <= task.scores["rocauc"]["mean"] <= 1.0


@pytest.mark.skipif(_matbench_installed(), reason="the real matbench is installed: the round trip above runs")
def test_results_go_through_matbench_when_it_is_importable(tmp_path, monkeypatch):
    """Where matbench is absent, its API is stood in for here, to test our side of the recording."""
    import sys
    import types

    recorded, written = {}, []

    class FakeTask:
        def __init__(self, name):
            folds = official_folds(name)
            self.metadata = types.SimpleNamespace(input_type="composition", target="yield strength")
            self.folds = list(range(5))
            self.folds_map = {k: f"fold_{k}" for k in self.folds}
            self.validation = {f"fold_{k}": types.SimpleNamespace(test=folds[k][1]) for k in self.folds}
            self.df = None

        def record(self, fold, predictions, std=None):
            assert self.df is not None and len(predictions) == len(self.validation[self.folds_map[fold]].test)
            recorded[fold] = predictions

    class FakeBenchmark:
        def __init__(self, autoload, subset):
            assert autoload is False
            self.tasks_map = {name: FakeTask(name) for name in subset}

        def to_file(self, path):
            written.append(path)

    bench = types.ModuleType("matbench.bench")
    bench.MatbenchBenchmark = FakeBenchmark
    monkeypatch.setitem(sys.modules, "matbench", types.ModuleType("matbench"))
    monkeypatch.setitem(sys.modules, "matbench.bench", bench)
    out = tmp_path / "dummy"
    run_benchmark("matbench_steels", "dummy", out)
    assert sorted(recorded) == [0, 1, 2, 3, 4] and written == [str(out / "matbench_results.json.gz")]
    table = load("matbench_steels")
    by_id = dict(zip(table.ids, table.targets))
    fold0 = official_folds("matbench_steels")[0][1]
    mean = json.loads((out / "fold_0" / "metrics.json").read_text())["constant"]
    assert recorded[0] == [pytest.approx(mean)] * len(fold0) and len(by_id) == 312


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "b"
    run_benchmark("matbench_steels", "atomsets", out, folds=[0], training=TrainingConfig(epochs=1, batch_size=16))
    with pytest.raises(AtomSetsError, match="other settings .epochs"):
        run_benchmark("matbench_steels", "atomsets", out, folds=[0], training=TrainingConfig(epochs=2, batch_size=16))
