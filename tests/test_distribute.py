"""tf.distribute: mirrored training on logical CPU devices matches one device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
from atomsets_tf.training.strategy import get_strategy
strategy = get_strategy(sys.argv[1], int(sys.argv[2]))
import keras
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
from tests._tables import learnable_table

result = fit(learnable_table(64), "atomsets", training=TrainingConfig(epochs=5, patience=5, batch_size=16, seed=3),
             model_config=ModelConfig(units=16, readout=["mean", "set2set"]), progress=False, strategy=strategy)
print(json.dumps({"replicas": result.metrics["replicas"], "strategy": result.metrics["strategy"],
                  "val_mae": result.metrics["val_mae"], "test_mae": result.metrics["test_mae"], "weights": [w.ravel()[:50].tolist() for w in result.model.get_weights()]}))
"""


def run(strategy: str, replicas: int) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, strategy, str(replicas)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_matches_one_device():
    one = run("auto", 1)
    two = run("mirrored", 2)
    assert one["replicas"] == 1 and two["replicas"] == 2 and two["strategy"] == "mirrored"
    assert two["val_mae"] == pytest.approx(one["val_mae"], rel=1e-4)
    assert two["test_mae"] == pytest.approx(one["test_mae"], rel=1e-4)
    for a, b in zip(one["weights"], two["weights"]):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-5)
