"""The atomsets-tf command line: contracts, error handling, resuming."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from atomsets_tf.cli import main


def run_cli(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "atomsets_tf.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def error_lines(stderr: str) -> list[str]:
    # TensorFlow's C++ runtime prints its own start-up notes; ours are the lines starting "Error:".
    return [ln for ln in stderr.splitlines() if ln.startswith("Error:")]


@pytest.fixture()
def tiny_csv(tmp_path):
    from tests._tables import learnable_table, write_csv

    return write_csv(learnable_table(60), tmp_path / "tiny.csv")


def test_fit_then_predict(tmp_path, tiny_csv):
    out = tmp_path / "run"
    r = run_cli("fit", str(tiny_csv), "--model", "atomsets", "--epochs", "3", "--units", "8", "-o", str(out))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val_mae", "test_mae", "epochs_run"} <= metrics.keys() and metrics["epochs_run"] == 3
    assert "test_mae" in r.stdout
    pred = tmp_path / "pred.csv"
    r = run_cli("predict", str(out / "model.keras"), str(tiny_csv), "-o", str(pred))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(open(pred)))
    assert rows[0] == ["id", "input", "prediction"] and len(rows) == 61 and rows[1][0] == "alloy-000"
    given = {r["id"]: r["composition"] for r in csv.DictReader(open(tiny_csv))}
    assert all(r[1] == given[r[0]] for r in rows[1:])  # each composition as given, beside its prediction


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "matbench_nosuchtask", "-o", "OUT"], "is not a Matbench task"),
        (["fit", "BADCSV", "-o", "OUT"], "cannot parse composition 'Qq3Zz'"),
        (["fit", "NANCSV", "-o", "OUT"], "target of b is nan"),
        (["predict", "GARBAGE", "matbench_steels", "-o", "OUT"], "garbage.keras is not a .keras model file"),
        (["fit", "--epochs", "0", "x", "-o", "OUT"], "0 is not in the range"),
        (["fit"], "Missing argument"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,composition,y\na,NaCl,1\nb,Qq3Zz,2\n")
    nan = tmp_path / "nan.csv"
    nan.write_text("id,composition,y\na,NaCl,1\nb,KCl,nan\n")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file at all")
    subst = {"BADCSV": str(bad), "NANCSV": str(nan), "GARBAGE": str(garbage), "OUT": str(tmp_path / "o")}
    code = main([subst.get(a, a) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_console_script_exit_code(tmp_path):
    r = run_cli("fit", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr


def test_killed_run_resumes(tmp_path, tiny_csv):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "atomsets_tf.cli", "fit", str(tiny_csv), "--epochs", "120", "--patience", "120",
            "--units", "8", "--batch-size", "8", "--checkpoint-every", "0", "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "training_log.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > 20:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    done_before = len(log.read_text().splitlines()) - 1
    assert done_before >= 20
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    # The state is saved after every epoch here; the kill may land between the log row and the save.
    assert done_before - 1 <= metrics["resumed_from_epoch"] <= done_before
    rows = [int(r.split(",")[0]) for r in log.read_text().splitlines()[1:]]
    assert rows == list(range(120))  # one row per epoch, none lost or repeated across the resume
    assert metrics["epochs_run"] == 120
