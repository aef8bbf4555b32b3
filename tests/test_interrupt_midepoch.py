"""Interrupts within a batch, resumed at the batch: a run stopped mid-epoch (SIGINT, or killed after a
periodic save) and rerun ends as the uninterrupted run, in memory and streamed from a prepared dataset."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.errors import IntervalError, TrainingInterrupted
from atomsets_tf.training import callbacks
from atomsets_tf.training.runs import STATE_DIR, STATE_FILE
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.utils.intervals import SaveInterval, parse_save_interval
from atomsets_tf.workflows.fit import ModelConfig, fit
from tests._tables import learnable_table, write_csv
from tests.test_cli import error_lines

#: 36 training entries in batches of 8: 5 steps an epoch (in memory).
CONFIG = TrainingConfig(epochs=3, patience=3, batch_size=8, learning_rate=1e-2, seed=2)
HEAD = ModelConfig(units=8, n_layers_before_readout=1, n_layers_after_readout=1)


class Killed(Exception):
    """Stands for a SIGKILL right after a periodic save."""


def state_of(folder: Path) -> dict:
    with np.load(folder / STATE_DIR / STATE_FILE) as state:
        return {"epochs": int(state["epochs_completed"]), "step": int(state["step"])}


def interrupt_at(monkeypatch, batch: int, sent: dict) -> None:
    """Send this process SIGINT after its ``batch``-th training batch (1-based, over the whole run)."""
    counted = callbacks.BatchCounter.on_train_batch_end

    def counting(self, b, logs=None):
        counted(self, b, logs)
        if self.batches == batch and not sent:
            sent["at"] = time.time()
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(callbacks.BatchCounter, "on_train_batch_end", counting)


def assert_same_run(resumed, resumed_dir: Path, reference, reference_dir: Path) -> None:
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = [(d / "training_log.csv").read_text().splitlines() for d in (resumed_dir, reference_dir)]
    assert rows[0][0] == rows[1][0] and len(rows[0]) == len(rows[1]) == CONFIG.epochs + 1
    for a, b in zip(rows[0][1:], rows[1][1:], strict=True):  # the partial epoch's loss is its whole mean
        np.testing.assert_allclose(np.array(a.split(","), float), np.array(b.split(","), float), rtol=1e-4)


@pytest.fixture(scope="module")
def table():
    return learnable_table(45, seed=3)


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    return fit(table, training=CONFIG, model_config=HEAD, out_dir=out, progress=False), out


def test_sigint_saves_mid_epoch_and_the_rerun_ends_as_an_uninterrupted_run(table, reference, tmp_path,
                                                                        monkeypatch):
    out, sent = tmp_path / "run", {}
    with monkeypatch.context() as patched, pytest.raises(TrainingInterrupted, match="at batch 2 of epoch 2"):
        interrupt_at(patched, 7, sent)  # 7 = 5 + 2: two batches into the second epoch
        fit(table, training=CONFIG, model_config=HEAD, out_dir=out, progress=False)
    saved_after = (out / STATE_DIR / STATE_FILE).stat().st_mtime - sent["at"]
    print(f"signal to saved state: {saved_after:.3f} s")
    assert saved_after < 60
    assert state_of(out) == {"epochs": 1, "step": 2}
    assert len((out / "training_log.csv").read_text().splitlines()) == 2  # the header and epoch 0
    resumed = fit(table, training=CONFIG, model_config=HEAD, out_dir=out, progress=False)
    assert (resumed.metrics["resumed_from_epoch"], resumed.metrics["resumed_from_step"]) == (1, 2)
    assert resumed.metrics["best_epoch"] == reference[0].metrics["best_epoch"]
    assert_same_run(resumed, out, *reference)


def test_a_run_killed_after_a_step_save_resumes_from_it(table, reference, tmp_path, monkeypatch):
    out, config = tmp_path / "run", TrainingConfig(**{**CONFIG.__dict__, "checkpoint_every": "4steps"})
    save, saves = callbacks.TrainingCheckpoint.save, []

    def save_then_die(self, epochs_completed, step=0):
        save(self, epochs_completed, step)
        saves.append((epochs_completed, step))
        if len(saves) == 3:  # every 4 batches, 5 an epoch: (0, 4), (1, 3), then (2, 2)
            raise Killed

    with monkeypatch.context() as patched, pytest.raises(Killed):
        patched.setattr(callbacks.TrainingCheckpoint, "save", save_then_die)
        fit(table, training=config, model_config=HEAD, out_dir=out, progress=False)
    assert saves == [(0, 4), (1, 3), (2, 2)] and state_of(out) == {"epochs": 2, "step": 2}
    resumed = fit(table, training=config, model_config=HEAD, out_dir=out, progress=False)
    assert resumed.metrics["resumed_from_step"] == 2
    assert_same_run(resumed, out, *reference)


PRESET = "megnet-mp-2019.4.1-formation_energy"
STREAMED = TrainingConfig(epochs=2, patience=2, batch_size=8, seed=1, stream_above=0)  # the prepared table streams


@pytest.fixture(scope="module")
def prepared(shared, tmp_path_factory):
    from atomsets_tf.data.io import load
    from atomsets_tf.workflows.prepare import prepare
    from tests._tables import write_matbench_json

    table = load(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz").subset(range(48))
    source = write_matbench_json(table, tmp_path_factory.mktemp("data") / "p.json", "e_form")
    out = tmp_path_factory.mktemp("prepared") / "megnet"
    prepare(source, PRESET, out, shard_size=20, progress=False)
    return out


@pytest.mark.isolated  # three MEGNet retrains: in the background lane
def test_a_streamed_run_interrupted_mid_epoch_resumes_to_the_same_weights(prepared, tmp_path, monkeypatch):
    from atomsets_tf.workflows.retrain import retrain

    reference = retrain(PRESET, str(prepared), "head", training=STREAMED, out_dir=tmp_path / "ref", progress=False)
    out, sent = tmp_path / "run", {}
    with monkeypatch.context() as patched, pytest.raises(TrainingInterrupted):
        interrupt_at(patched, 6, sent)  # 4 batches an epoch: in the second epoch
        retrain(PRESET, str(prepared), "head", training=STREAMED, out_dir=out, progress=False)
    state = state_of(out)
    assert state["epochs"] == 1 and state["step"] > 0 and (out / STATE_DIR / STATE_FILE).stat().st_mtime - sent["at"] < 60
    resumed = retrain(PRESET, str(prepared), "head", training=STREAMED, out_dir=out, progress=False)
    assert (resumed.metrics["resumed_from_epoch"], resumed.metrics["resumed_from_step"]) == (
        state["epochs"], state["step"])
    for a, b in zip(_weights(resumed.model), _weights(reference.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in getattr(model, "keras_model", model).get_weights()]


@pytest.mark.parametrize("value, interval", [(30, SaveInterval(seconds=30.0)), ("0", SaveInterval(seconds=0.0)),
                                             ("2.5", SaveInterval(seconds=2.5)), ("30s", SaveInterval(seconds=30.0)),
                                             ("10min", SaveInterval(seconds=600.0)),
                                             ("2h", SaveInterval(seconds=7200.0)), ("500steps", SaveInterval(steps=500)),
                                             ("1step", SaveInterval(steps=1))])
def test_checkpoint_intervals_parse(value, interval):
    assert parse_save_interval(value) == interval


@pytest.mark.parametrize("value", ["-5", "10 minutes", "0steps", "1.5steps", "often", "5d", ""])
def test_a_bad_checkpoint_interval_is_one_error_line(value, tmp_path, capsys):
    with pytest.raises(IntervalError):
        parse_save_interval(value)
    csv = write_csv(learnable_table(20), tmp_path / "t.csv")
    assert main(["fit", str(csv), "--epochs", "1", "--checkpoint-every", value, "-o", str(tmp_path / "run")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--checkpoint-every" in lines[0] and "500steps" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_step_interval_is_taken_by_the_cli(tmp_path):
    csv = write_csv(learnable_table(30), tmp_path / "t.csv")
    assert main(["fit", str(csv), "--epochs", "2", "--batch-size", "8", "--units", "8", "--quiet",
                 "--checkpoint-every", "2steps", "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
