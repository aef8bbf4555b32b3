"""Runs that must not silently give wrong results or lose work.

Resuming or reusing a folder with other settings, two processes on one folder,
interrupted runs (signals, corrupt state), split files that leak test ids, and
output paths that fail only after the work.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data.io import load
from atomsets_tf.data.splits import make_splits
from atomsets_tf.errors import CheckpointError, DataFormatError, OutputPathError, RunLockedError, RunSettingsError
from atomsets_tf.evaluation.protocol import run_benchmark
from atomsets_tf.training import callbacks
from atomsets_tf.training.runs import STATE_DIR, STATE_FILE
from atomsets_tf.training.trainer import TrainingConfig, strategy_label
from atomsets_tf.utils.io import LOCK_FILE, atomic_path, check_writable, output_lock
from atomsets_tf.workflows.fit import ModelConfig, fit
from tests._tables import learnable_table, write_csv
from tests.test_cli import error_lines

CONFIG = TrainingConfig(epochs=3, patience=3, batch_size=64)
HEAD = ModelConfig(units=8)


class Killed(Exception):
    """Stands for a kill right after the training state of the first epoch is saved."""


def log_epochs(folder: Path) -> list[int]:
    return [int(row.split(",")[0]) for row in (folder / "training_log.csv").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def steels():
    return load("matbench_steels")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, steels) -> Path:
    """A folder left by a run of ``CONFIG`` killed after its first epoch (default 30 s save interval)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    save = callbacks.TrainingCheckpoint.save

    def save_then_die(self, epochs_completed):
        save(self, epochs_completed)
        raise Killed

    callbacks.TrainingCheckpoint.save = save_then_die
    try:
        with pytest.raises(Killed):
            fit(steels, training=CONFIG, model_config=HEAD, out_dir=out, progress=False)
    finally:
        callbacks.TrainingCheckpoint.save = save
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "run"))


def saved_epochs(folder: Path) -> int:
    with np.load(folder / STATE_DIR / STATE_FILE) as state:
        return int(state["epochs_completed"])


def test_the_first_epoch_is_saved_and_a_rerun_resumes(tmp_path, interrupted, steels):
    out = copy_of(interrupted, tmp_path)
    assert saved_epochs(out) == 1  # saved after the first epoch, not only after 30 s
    result = fit(steels, training=CONFIG, model_config=HEAD, out_dir=out, progress=False)
    assert result.metrics["resumed_from_epoch"] == 1 and result.metrics["epochs_run"] == CONFIG.epochs
    assert log_epochs(out) == [0, 1, 2]
    assert result.metrics["strategy"] == "default"  # not TensorFlow's private class name
    assert result.metrics["fingerprint"]["settings"]["model"] == "atomsets"
    plots = sorted(result.metrics["plots"].values())  # parity.png, training_curve.png with matplotlib
    assert sorted(p.name for p in out.iterdir()) == sorted(["metrics.json", "model.keras", "test_predictions.csv",
                                                            "training_log.csv", *plots])


@pytest.mark.parametrize(
    "change, named",
    [
        ({"training": replace(CONFIG, learning_rate=1e-2)}, "learning_rate 0.001 -> 0.01"),
        ({"training": replace(CONFIG, seed=1)}, "seed 0 -> 1"),
        ({"protocol": "matbench"}, 'protocol "paper" -> "matbench"'),
        ({"model": "atomsets-v0"}, 'model "atomsets" -> "atomsets-v0"'),
    ],
)
def test_resuming_with_other_settings_is_refused(tmp_path, interrupted, steels, change, named):
    out = copy_of(interrupted, tmp_path)
    kwargs = {"training": CONFIG, "model_config": HEAD, "out_dir": out, "progress": False, **change}
    with pytest.raises(RunSettingsError) as refused:
        fit(steels, **kwargs)
    message = str(refused.value)
    assert named in message and str(out) in message and "--restart" in message
    assert saved_epochs(out) == 1  # the old state is left as it was
    result = fit(steels, restart=True, **kwargs)
    assert result.metrics["resumed_from_epoch"] == 0 and log_epochs(out) == [0, 1, 2]
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["fingerprint"] == result.metrics["fingerprint"]
    assert recorded["model"] == kwargs.get("model", "atomsets") and recorded["protocol"] == kwargs.get("protocol",
                                                                                                       "paper")
    assert recorded["training"]["learning_rate"] == kwargs["training"].learning_rate


def test_a_finished_folder_with_other_settings_is_refused_on_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "matbench_steels", "--epochs", "1", "--units", "8", "--batch-size", "64", "--quiet", "-o", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--lr", "0.01"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "learning_rate 0.001 -> 0.01" in lines[0] and "--restart" in lines[0]
    assert json.loads((out / "metrics.json").read_text())["training"]["learning_rate"] == 0.001
    assert main([*args, "--lr", "0.01", "--restart"]) == 0
    assert json.loads((out / "metrics.json").read_text())["training"]["learning_rate"] == 0.01


def test_a_corrupt_state_is_a_clear_error(tmp_path, interrupted, steels):
    out = copy_of(interrupted, tmp_path)
    state = out / STATE_DIR / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt.*--restart"):
        fit(steels, training=CONFIG, model_config=HEAD, out_dir=out, progress=False)
    result = fit(steels, training=CONFIG, model_config=HEAD, out_dir=out, progress=False, restart=True)
    assert result.metrics["resumed_from_epoch"] == 0


def test_benchmark_does_not_reuse_another_models_folds(tmp_path):
    out = tmp_path / "b"
    training = TrainingConfig(epochs=1, batch_size=16)
    run_benchmark("matbench_steels", "atomsets", out, folds=[0], training=training, model_config=HEAD)
    with pytest.raises(RunSettingsError, match='fold_0 holds a run with other settings .model "atomsets" -> '):
        run_benchmark("matbench_steels", "atomsets-v0", out, folds=[0], training=training, model_config=HEAD)
    summary = run_benchmark("matbench_steels", "atomsets-v0", out, folds=[0], training=training, model_config=HEAD,
                            restart=True)
    fold = json.loads((out / "fold_0" / "metrics.json").read_text())
    assert summary["model"] == fold["model"] == "atomsets-v0"


def test_benchmark_reads_finished_dummy_folds_back(tmp_path):
    out = tmp_path / "d"
    run_benchmark("matbench_steels", "dummy", out, folds=[0, 1])
    stamp = (out / "fold_1" / "metrics.json").stat().st_mtime_ns
    run_benchmark("matbench_steels", "dummy", out, folds=[0, 1])
    assert (out / "fold_1" / "metrics.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_benchmark_reads_a_finished_megnet_fold_back(tmp_path, shared):
    """The fingerprint a benchmark expects is the one retrain records (else every rerun would be refused)."""
    table = load(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz").subset(range(40))
    out = tmp_path / "m"
    training = TrainingConfig(epochs=1, batch_size=16)
    run_benchmark(table, "megnet", out, protocol="paper", folds=[0], training=training)
    stamp = (out / "fold_0" / "metrics.json").stat().st_mtime_ns
    run_benchmark(table, "megnet", out, protocol="paper", folds=[0], training=training)
    assert (out / "fold_0" / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(RunSettingsError, match='mode "scratch" -> "head"'):
        run_benchmark(table, "megnet-head", out, protocol="paper", folds=[0], training=training)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_held_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path):
    with output_lock(tmp_path):
        with pytest.raises(RunLockedError, match=f"in use by another run .process {os.getpid()} "):
            with output_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(f"{dead_pid()} somehost\n")  # left by a killed run
    with output_lock(tmp_path) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom atomsets_tf.utils.io import output_lock\n"
                               "with output_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        csv = write_csv(learnable_table(40), tmp_path / "t.csv")
        code = main(["fit", str(csv), "--epochs", "1", "--units", "8", "--quiet", "-o", str(out)])
        lines = error_lines(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and len(lines) == 1 and f"process {holder.pid}" in lines[0] and str(out) in lines[0]
    assert not (out / "training_log.csv").exists()


def test_epoch_log_writes_whole_lines_and_a_resume_drops_a_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    writes, syncs = [], []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, data: (writes.append(bytes(data)), real_write(fd, data))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    log = callbacks.EpochLog(path)
    log.on_train_begin()
    log.on_epoch_end(0, {"val_mae": 2.0, "loss": 1.5})
    log.on_epoch_end(1, {"val_mae": 1.0, "loss": 0.5})
    assert writes == [b"epoch,loss,val_mae\n", b"0,1.5,2.0\n", b"1,0.5,1.0\n"] and len(syncs) == 3
    resumed = callbacks.EpochLog(path, append=True)
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"loss": 0.25, "val_mae": 0.5})
    assert path.read_text() == "epoch,loss,val_mae\n0,1.5,2.0\n1,0.5,1.0\n2,0.25,0.5\n"

    from atomsets_tf.training.trainer import _truncate_log

    path.write_text("epoch,loss\n0,1.5\n1,0.5\n2,0.2")  # the last row cut short
    _truncate_log(path, 3)
    assert path.read_text() == "epoch,loss\n0,1.5\n1,0.5\n"


def start_fit(csv: Path, out: Path, epochs: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "atomsets_tf.cli", "fit", str(csv), "--epochs", str(epochs), "--patience",
            str(epochs), "--units", "8", "--batch-size", "8", "--quiet", "-o", str(out)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def wait_for_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    log = out / "training_log.csv"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} epochs logged (exit {proc.poll()})")


def test_sigint_and_sigterm_save_the_state_and_a_rerun_resumes(tmp_path):
    csv = write_csv(learnable_table(40), tmp_path / "t.csv")
    out = tmp_path / "run"
    epochs = 100
    done = 0
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        proc = start_fit(csv, out, epochs)
        wait_for_rows(out, done + 3, proc)
        if sig == signal.SIGINT:  # the default 30 s interval has not passed: the first epoch was saved anyway
            assert saved_epochs(out) >= 1
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        lines = error_lines(err)
        assert proc.returncode == code, err[-2000:]
        assert len(lines) == 1 and "interrupted; the training state was saved in" in lines[0]
        assert "run the same command to resume" in lines[0] and "Traceback" not in err
        done = saved_epochs(out)
        assert log_epochs(out) == list(range(done))  # saved in the epoch it stopped in: its row comes later
        assert not (out / "metrics.json").exists() and not (out / LOCK_FILE).exists()
    proc = start_fit(csv, out, epochs)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == done and log_epochs(out) == list(range(epochs))


def test_a_second_signal_stops_at_once(capsys):
    from atomsets_tf.errors import TrainingInterrupted

    stop = callbacks.GracefulStop(lambda: "interrupted; nothing was saved")
    stop._handle(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM and "stopping after this batch" in capsys.readouterr().err
    with pytest.raises(TrainingInterrupted, match="nothing was saved") as raised:
        stop._handle(signal.SIGINT, None)
    assert isinstance(raised.value, KeyboardInterrupt) and raised.value.signum == signal.SIGINT


def test_split_files_that_leak_or_repeat_ids_are_refused(tmp_path):
    table = learnable_table(40)
    ids = table.ids
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps({"train": ids[:30], "test": ids[29:]}))
    with pytest.raises(DataFormatError, match=f"split.json: train and test share 1 ids, e.g. '{ids[29]}'"):
        make_splits(table, split_file=spec)
    with pytest.raises(DataFormatError, match=f"train and val share 2 ids, e.g. '{ids[0]}', '{ids[1]}'"):
        make_splits(table, split_file={"train": ids[:30], "val": ids[:2], "test": ids[30:]})
    with pytest.raises(DataFormatError, match=f"'train': 1 ids are listed more than once, e.g. '{ids[3]}'"):
        make_splits(table, split_file={"train": [*ids[:30], ids[3]], "test": ids[30:]})
    with pytest.raises(DataFormatError, match="'test': 1 ids are not in the data, e.g. 'nope'"):
        make_splits(table, split_file={"train": ids[:30], "test": ["nope"]})
    # Cross-validation scores on the part it leaves out: validation and test may be the same ids.
    train, val, test = make_splits(table, split_file={"train": ids[:30], "val": ids[30:], "test": ids[30:]})
    assert len(train) == 30 and val.tolist() == test.tolist()


def test_strategies_are_recorded_by_their_option_names():
    import tensorflow as tf

    assert strategy_label(tf.distribute.get_strategy()) == "default"
    assert strategy_label(tf.distribute.OneDeviceStrategy("/cpu:0")) == "one-device"
    assert strategy_label(tf.distribute.MirroredStrategy(["/cpu:0"])) == "mirrored"


def test_output_paths_are_checked_before_the_work(tmp_path, capsys, monkeypatch):
    import atomsets_tf.models.loading as loading

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(loading, "load_model", no_work)
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    cases = [(["tap", "model.keras", "matbench_steels", "--layer", "V1", "-o", str(tmp_path / "x.txt")],
              "must end in .npz"),
             (["predict", "model.keras", "matbench_steels", "-o", str(a_file / "p.csv")], "is a file, not a folder")]
    for args, message in cases:
        assert main(args) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0] and args[-1] in lines[0]
    assert check_writable(tmp_path / "new" / "deeper" / "p.npz", (".npz",)) == tmp_path / "new" / "deeper" / "p.npz"
    assert not (tmp_path / "new").exists()
    with pytest.raises(OutputPathError, match="must end in .npz or .csv"):
        check_writable(tmp_path / "p.txt", (".npz", ".csv"))
    with pytest.raises(OutputPathError, match="it is a folder"):
        check_writable(tmp_path)


def test_atomic_path_names_the_target_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "pred.csv"
    with pytest.raises(OSError) as failed:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert failed.value.filename == str(target) and failed.value.errno == errno.ENOSPC
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(OSError) as failed:
        with atomic_path(tmp_path / "folder.csv") as tmp:
            tmp.write_text("x")
    assert failed.value.filename == str(tmp_path / "folder.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv"]


def test_stream_above_and_input_pipelines_are_in_the_fingerprint_only_when_set():
    from atomsets_tf.data.io import load
    from atomsets_tf.data.splits import make_splits
    from atomsets_tf.errors import AtomSetsError
    from atomsets_tf.training.runs import run_settings

    table = load("matbench_steels").subset(range(30))
    splits = make_splits(table, "paper", 0, 0, 0.1)

    def training_of(config):
        return run_settings({"model": "dummy"}, table, "regression", splits, "paper", 0, 0.1, training=config)[
            "training"]

    default = training_of(TrainingConfig())
    assert "stream_above" not in default and "input_pipelines" not in default  # runs recorded before keep theirs
    assert training_of(TrainingConfig(stream_above=0))["stream_above"] == 0
    assert training_of(TrainingConfig(input_pipelines=2))["input_pipelines"] == 2
    with pytest.raises(AtomSetsError, match="input_pipelines"):
        TrainingConfig(input_pipelines=0)
    with pytest.raises(AtomSetsError, match="stream_above"):
        TrainingConfig(stream_above=-1)
