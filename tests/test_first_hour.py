"""What a new user meets first: formulas on the command line, targets never guessed, two-part outputs that show
their parts, warnings where a number rests on too few entries, and missing data that names the way out."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pandas as pd
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data import io as data_io
from atomsets_tf.errors import DataFormatError, SmallDataWarning
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
from tests._tables import learnable_table, write_csv

GAP_PRESET = "atomsets-v0-expt_gap"
TINY = TrainingConfig(epochs=2, patience=2, batch_size=16)
SMALL_HEAD = ModelConfig(units=8, n_layers_before_readout=1, n_layers_after_readout=1)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


def read_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_formulas_given_on_the_command_line_are_predicted_with_their_parts(tmp_path):
    out = tmp_path / "gaps.csv"
    assert main(["predict", GAP_PRESET, "Si,GaAs,NaCl,Cu,Fe", "-o", str(out)]) == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["id", "input", "prediction", "probability_nonzero"]
    assert [r["input"] for r in rows] == ["Si", "GaAs", "NaCl", "Cu", "Fe"]
    for r in rows:
        gap, p = float(r["prediction"]), float(r["probability_nonzero"])
        assert 0 <= p <= 1 and gap >= 0
        assert (gap == 0) == (p < 0.5), r  # an exact 0 is the two-part output calling the entry a metal
    by_formula = {r["input"]: r for r in rows}
    assert float(by_formula["NaCl"]["probability_nonzero"]) > 0.5 and float(by_formula["NaCl"]["prediction"]) > 2
    assert float(by_formula["Cu"]["probability_nonzero"]) < 0.5 and float(by_formula["Cu"]["prediction"]) == 0


def test_one_formula_and_a_typo(tmp_path, capsys):
    out = tmp_path / "si.csv"
    assert main(["predict", GAP_PRESET, "Si", "-o", str(out)]) == 0
    assert [r["input"] for r in read_rows(out)] == ["Si"]
    assert main(["predict", GAP_PRESET, "Xq2O3", "-o", str(tmp_path / "x.csv")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'Fe2O3,MgO'" in lines[0] and "matbench_Si" not in lines[0]


def test_predict_frame_carries_ids_and_inputs():
    from atomsets_tf.models.loading import load_model, predict_frame, predict_table

    model = load_model("atomsets-v0-steels")
    frame = predict_frame(model, ["Fe0.98C0.02", "Fe0.7Ni0.3"])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["id", "input", "prediction"]
    assert list(frame["input"]) == ["Fe0.98C0.02", "Fe0.7Ni0.3"]
    np.testing.assert_array_equal(frame["prediction"], predict_table(model, ["Fe0.98C0.02", "Fe0.7Ni0.3"]))


def test_two_numeric_columns_and_no_target_are_refused(tmp_path, capsys):
    path = tmp_path / "two.csv"
    table = learnable_table(30)
    pd.DataFrame({"id": table.ids, "composition": table.inputs, "yield": table.targets,
                  "hardness": table.targets * 2}).to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="several are numeric .yield, hardness.*--target"):
        data_io.load(str(path))
    assert main(["fit", str(path), "--epochs", "1", "-o", str(tmp_path / "run")]) == 2
    assert "yield, hardness" in error_lines(capsys.readouterr().err)[0]
    assert data_io.load(str(path), target="hardness").target_name == "hardness"
    # One numeric column among text ones is the target, without asking.
    pd.DataFrame({"id": table.ids, "composition": table.inputs, "note": ["x"] * 30,
                  "yield": table.targets}).to_csv(path, index=False)
    assert data_io.load(str(path)).target_name == "yield"


def test_every_run_prints_its_target(tmp_path, capsys):
    csv_path = write_csv(learnable_table(40), tmp_path / "t.csv")
    assert main(["fit", str(csv_path), "--epochs", "1", "--quiet", "-o", str(tmp_path / "run")]) == 0
    assert any(line.split() == ["target", "y"] for line in capsys.readouterr().out.splitlines())


def test_few_validation_entries_and_an_ensembles_std_warn(tmp_path):
    table = learnable_table(40)  # 4 validation entries in the paper's 80/10/10
    with pytest.warns(SmallDataWarning) as caught:
        fit(table, "atomsets", training=TINY, model_config=ModelConfig(units=8, ensemble=2), progress=False)
    messages = [str(w.message) for w in caught]
    assert any("validation part holds 4 entries (fewer than 20)" in m and "--val-fraction" in m for m in messages)
    assert any("std rescale factor" in m and "on 4 validation points" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallDataWarning)  # enough entries: no warning
        fit(learnable_table(220), "atomsets", training=TrainingConfig(epochs=1, batch_size=64),
            model_config=SMALL_HEAD, progress=False)


def test_a_missing_task_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(data_io, "shared_dir", lambda: None)
    monkeypatch.setenv(data_io.DATA_ENV, str(tmp_path))
    with pytest.raises(DataFormatError) as raised:
        data_io.load("matbench_expt_gap")
    message = str(raised.value)
    assert "https://ml.materialsproject.org/projects/matbench_expt_gap.json.gz" in message
    assert "load_dataset('matbench_expt_gap'" in message and f"{data_io.DATA_ENV}=DIR" in message
    with pytest.raises(DataFormatError, match="too few entries .5.*6 entries with the default"):
        fit(learnable_table(5), "atomsets", training=TINY, progress=False)


def test_a_finished_fit_is_read_back_not_retrained(tmp_path):
    import json
    import subprocess
    import sys
    import time

    csv_path = write_csv(learnable_table(60), tmp_path / "t.csv")
    out = tmp_path / "run"
    first = fit(str(csv_path), "atomsets", training=TrainingConfig(epochs=3), out_dir=out, progress=False)
    recorded = (out / "metrics.json").read_text()
    # The same run on the command line (its defaults are the API's): read back, in a fresh process, quickly.
    args = [sys.executable, "-m", "atomsets_tf.cli", "fit", str(csv_path), "--epochs", "3", "--quiet", "-o", str(out)]
    start = time.perf_counter()
    second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - start
    assert second.returncode == 0, second.stderr
    assert "Read back the finished run" in second.stdout and took < 15, (took, second.stdout)
    assert (out / "metrics.json").read_text() == recorded  # nothing was rewritten
    mae = f"{json.loads(recorded)['test_mae']:.4g}"
    assert any(line.split() == ["test_mae", mae] for line in second.stdout.splitlines()), second.stdout
    again = fit(str(csv_path), "atomsets", training=TrainingConfig(epochs=3), out_dir=out, progress=False)
    assert again.metrics["read_back"] and "read_back" not in first.metrics
    assert again.test_ids == first.test_ids and again.metrics["epochs_run"] == 3
    np.testing.assert_allclose(again.test_predictions, first.test_predictions, rtol=1e-12)


def test_one_name_per_idea_across_commands():
    from atomsets_tf.cli import cli

    for name, command in cli.commands.items():
        options = {opt: param for param in command.params for opt in getattr(param, "opts", [])}
        if "-o" in options:
            assert "--output" in options["-o"].opts, name
        if "--target" in options:  # a column or value of the data, wherever it appears
            assert name in ("fit", "retrain"), name
        visible = [opt for opt, param in options.items() if not getattr(param, "hidden", False)]
        assert "--budget-epochs" not in visible, name  # epochs are --epochs everywhere
    for name in ("benchmark", "grid", "learning-curve", "extrapolation", "fit", "retrain"):
        assert "--epochs" in {opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])}, name
    assert "--protocol" not in {opt for p in cli.commands["extrapolation"].params for opt in getattr(p, "opts", [])}


def test_the_old_name_of_epochs_still_reads_and_a_clash_is_refused(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "matbench_steels", "--model", "dummy", "--folds", "0", "--budget-epochs", "1",
                 "--quiet", "-o", str(out)]) == 0
    assert main(["benchmark", "matbench_steels", "--model", "dummy", "--folds", "0", "--epochs", "2",
                 "--budget-epochs", "1", "--quiet", "-o", str(tmp_path / "b2")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "old name of --epochs" in lines[0]


def test_a_finished_retrain_is_read_back_too(tmp_path):
    from atomsets_tf.workflows.retrain import retrain

    table = learnable_table(60)
    parent = tmp_path / "parent"
    fit(table, "atomsets", training=TINY, model_config=SMALL_HEAD, out_dir=parent, progress=False)
    first = retrain(parent / "model.keras", table, "head", training=TINY, out_dir=tmp_path / "child", progress=False)
    again = retrain(parent / "model.keras", table, "head", training=TINY, out_dir=tmp_path / "child", progress=False)
    assert "read_back" not in first.metrics and again.metrics["read_back"]
    assert again.metrics["test_mae"] == first.metrics["test_mae"] and again.test_ids == first.test_ids
    np.testing.assert_allclose(again.test_predictions, first.test_predictions, rtol=1e-12)
