"""tf.distribute: MultiWorkerMirroredStrategy with two worker processes on loopback ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: Every test here starts worker processes: the module runs in the background lane (see _isolated.py).
pytestmark = pytest.mark.isolated

EPOCHS = 3
#: Exit status of a worker killed on purpose.
KILLED = 3
# One worker (or, without TF_CONFIG, a single process): fit, then print the metrics and final weights.
SCRIPT = r"""
import json, os, sys
from atomsets_tf.training.strategy import get_strategy
strategy = get_strategy(sys.argv[1])
from atomsets_tf.training import callbacks
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
if os.environ.get("KILL_AFTER_EPOCH"):  # simulate a crash right after the resume state of that epoch is saved
    save = callbacks.TrainingCheckpoint.on_epoch_end
    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch + 1 == int(os.environ["KILL_AFTER_EPOCH"]):
            os._exit(KILLED)
    callbacks.TrainingCheckpoint.on_epoch_end = save_then_die
out = sys.argv[3] if len(sys.argv) > 3 else None
config = TrainingConfig(epochs=EPOCHS, patience=EPOCHS, batch_size=16, learning_rate=1e-2, seed=3,
                        checkpoint_every=0)
result = fit(sys.argv[2], "atomsets", training=config, model_config=ModelConfig(units=8), out_dir=out,
             progress=False, strategy=strategy)
print(json.dumps({**{k: result.metrics[k] for k in ("replicas", "strategy", "val_mae", "epochs_run",
                                                    "best_epoch", "resumed_from_epoch")},
                  "weights": [w.ravel().tolist() for w in result.model.get_weights()]}))
""".replace("EPOCHS", str(EPOCHS)).replace("KILLED", str(KILLED))
TIMEOUT_S = 180


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def env_for(cluster: dict | None, index: int = 0) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if cluster is not None:
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    return env


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_workers(csv_path: Path, out_dir: Path, n: int = 2, kill_after_epoch: int | None = None) -> list[dict]:
    """Run ``n`` workers of one cluster to completion (all are killed if one fails or hangs).

    With ``kill_after_epoch``, every worker exits abruptly once that epoch's
    resume state is saved; the result is then ``[]``.
    """
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(n)]}
    envs = [env_for(cluster, i) for i in range(n)]
    for env in envs:  # a killed worker leaves its private output folder behind: keep it out of /tmp
        env["TMPDIR"] = str(out_dir.parent)
    if kill_after_epoch is not None:
        for env in envs:
            env["KILL_AFTER_EPOCH"] = str(kill_after_epoch)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, "multi-worker", str(csv_path), str(out_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for env in envs]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    expected = 0 if kill_after_epoch is None else KILLED
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == expected, f"worker {i} exited with {p.returncode}:\n{err[-3000:]}"
    return [] if kill_after_epoch is not None else [last_json(out) for out, _ in outputs]


def write_tiny_csv(path: Path) -> Path:
    from tests._tables import learnable_table, write_csv

    return write_csv(learnable_table(64), path)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """A tiny CSV, the output folder both workers were given, and what the two workers printed."""
    tmp = tmp_path_factory.mktemp("multi_worker")
    csv_path = write_tiny_csv(tmp / "tiny.csv")
    out = tmp / "run"  # the same folder for both workers, as on a shared file system
    return csv_path, out, run_workers(csv_path, out)


def assert_same_weights(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> None:
    for x, y in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_writes(uninterrupted):
    _, out, (chief, other) = uninterrupted
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["strategy"] == "multi-worker"
    assert_same_weights(chief, other)
    assert chief["val_mae"] == other["val_mae"] and chief["epochs_run"] == EPOCHS
    # Validation improves every epoch, so the final (best) weights are the last epoch's: comparing them checks
    # every step.
    assert chief["best_epoch"] == EPOCHS

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "multi-worker"
    assert metrics["epochs_run"] == EPOCHS and metrics["val_mae"] == chief["val_mae"]
    plots = sorted(metrics["plots"].values())  # parity.png, training_curve.png with matplotlib
    assert sorted(p.name for p in out.iterdir()) == sorted(["metrics.json", "model.keras", "test_predictions.csv",
                                                            "training_log.csv", *plots])
    assert len((out / "training_log.csv").read_text().splitlines()) == EPOCHS + 1


@pytest.mark.slow
def test_two_workers_match_one_process(uninterrupted):
    csv_path, _, (chief, _) = uninterrupted
    r = subprocess.run([sys.executable, "-c", SCRIPT, "auto", str(csv_path)], capture_output=True, text=True,
                       timeout=TIMEOUT_S, env=env_for(None))
    assert r.returncode == 0, r.stderr[-3000:]
    single = last_json(r.stdout)
    # Two workers of one replica each train as one process does on the whole batch.
    assert single["replicas"] == 1
    assert chief["val_mae"] == pytest.approx(single["val_mae"], rel=1e-4)
    # a gradient summed over two workers rounds otherwise than over one batch (seen: 4.7e-5 on one weight)
    assert_same_weights(chief, single, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_interrupted_workers_resume_together(tmp_path, uninterrupted):
    csv_path, _, (reference, _) = uninterrupted
    out = tmp_path / "run"
    assert run_workers(csv_path, out, kill_after_epoch=1) == []
    assert (out / ".training_state" / "state.npz").is_file() and not (out / "metrics.json").exists()

    chief, other = run_workers(csv_path, out)
    assert chief["resumed_from_epoch"] == other["resumed_from_epoch"] == 1
    assert chief["epochs_run"] == other["epochs_run"] == EPOCHS
    assert_same_weights(chief, other)
    # The resumed run ends where the uninterrupted one did.
    assert chief["val_mae"] == pytest.approx(reference["val_mae"], rel=1e-6)
    assert_same_weights(chief, reference, rtol=1e-5, atol=1e-7)
    assert json.loads((out / "metrics.json").read_text())["resumed_from_epoch"] == 1
    assert not (out / ".training_state").exists()
