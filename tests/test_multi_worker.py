"""tf.distribute: MultiWorkerMirroredStrategy with two worker processes on loopback ports."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# One worker (or, without TF_CONFIG, a single process): fit, then print the final weights.
SCRIPT = r"""
import json, sys
from atomsets_tf.training.strategy import get_strategy
strategy = get_strategy(sys.argv[1])
from atomsets_tf.training.fit import ModelConfig, TrainingConfig, fit
out = sys.argv[3] if len(sys.argv) > 3 else None
result = fit(sys.argv[2], "atomsets", training=TrainingConfig(epochs=2, patience=2, batch_size=16, seed=3),
             model_config=ModelConfig(units=8), out_dir=out, progress=False, strategy=strategy)
print(json.dumps({"replicas": result.metrics["replicas"], "strategy": result.metrics["strategy"],
                  "val_mae": result.metrics["val_mae"], "weights": [w.ravel().tolist() for w in result.model.get_weights()]}))
"""
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


def run_workers(csv_path: Path, out_dir: Path, n: int = 2) -> list[dict]:
    """Run ``n`` workers of one cluster to completion (all are killed if one fails or hangs)."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(n)]}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, "multi-worker", str(csv_path), str(out_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(cluster, i))
             for i in range(n)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"worker {i} failed:\n{err[-3000:]}"
    return [last_json(out) for out, _ in outputs]


@pytest.fixture()
def tiny_csv(tmp_path) -> Path:
    from tests.test_models import learnable_table

    table = learnable_table(64)
    p = tmp_path / "tiny.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "composition", "y"])
        for i, c, y in zip(table.ids, table.inputs, table.targets):
            w.writerow([i, c, y])
    return p


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path, tiny_csv):
    out = tmp_path / "run"  # the same folder for both workers, as on a shared file system
    chief, other = run_workers(tiny_csv, out)

    assert chief["replicas"] == other["replicas"] == 2
    assert chief["strategy"] == "MultiWorkerMirroredStrategy"
    for a, b in zip(chief["weights"], other["weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert chief["val_mae"] == other["val_mae"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "MultiWorkerMirroredStrategy"
    assert metrics["epochs_run"] == 2 and metrics["val_mae"] == chief["val_mae"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.keras", "test_predictions.csv",
                                                     "training_log.csv"]
    assert len((out / "training_log.csv").read_text().splitlines()) == 3

    # Two workers of one replica each train as one process does on the whole batch.
    r = subprocess.run([sys.executable, "-c", SCRIPT, "auto", str(tiny_csv)], capture_output=True, text=True,
                       timeout=TIMEOUT_S, env=env_for(None))
    assert r.returncode == 0, r.stderr[-3000:]
    single = last_json(r.stdout)
    assert single["replicas"] == 1
    assert chief["val_mae"] == pytest.approx(single["val_mae"], rel=1e-4)
    for a, b in zip(chief["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
