"""MultiWorkerMirroredStrategy on a prepared dataset: each worker streams its own shards (sharded by file)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests._tables import write_matbench_json
from tests.test_multi_worker import TIMEOUT_S, assert_same_weights, env_for, free_ports, last_json

#: Two worker processes and one more: in the background lane (see _isolated.py).
pytestmark = pytest.mark.isolated

# One worker (or, without TF_CONFIG, one process reading as argv[3] input pipelines): fit mlp-f on the streamed
# dataset, print the metrics, the final weights and the shard files of each input pipeline this process streamed from.
SCRIPT = r"""
import json, sys
from atomsets_tf.training.strategy import get_strategy
strategy = get_strategy(sys.argv[1])
from atomsets_tf.data.prepared import PreparedDataset
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
read, context = [], []
stream, parsed = PreparedDataset.stream, PreparedDataset._parsed
def streaming(self, *args, input_context=None, **kwargs):
    context[:] = [input_context]
    return stream(self, *args, input_context=input_context, **kwargs)
def parsing(self, shards, *args):
    if context and context[0] is not None and context[0].num_input_pipelines > 1:
        read.append(sorted(self.shards[j]["file"] for j in shards))
    return parsed(self, shards, *args)
PreparedDataset.stream, PreparedDataset._parsed = streaming, parsing
config = TrainingConfig(epochs=3, patience=3, batch_size=8, learning_rate=1e-2, seed=3, checkpoint_every=0,
                        stream_above=0, input_pipelines=int(sys.argv[3]) if len(sys.argv) > 3 else 1)
result = fit(sys.argv[2], "mlp-f", training=config, model_config=ModelConfig(units=8), progress=False,
             strategy=strategy)
print(json.dumps({"replicas": result.metrics["replicas"], "val_mae": result.metrics["val_mae"],
                  "weights": [w.ravel().tolist() for w in result.model.get_weights()], "read": read}))
"""


@pytest.fixture(scope="module")
def dataset(shared, tmp_path_factory):
    from atomsets_tf.data.io import load
    from atomsets_tf.workflows.prepare import prepare

    table = load(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz").subset(range(96))
    tmp = tmp_path_factory.mktemp("mw_prepared")
    out = tmp / "mlp-f"
    prepare(write_matbench_json(table, tmp / "p.json", "e_form"), "mlp-f", out, shard_size=12, progress=False)
    return out


def run(args: list[str], envs: list[dict]) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for env in envs]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{err[-3000:]}"
    return [last_json(out) for out, _ in outputs]


def own_shards(result: dict) -> set[str]:
    """The shard files a worker streamed for training (the one input pipeline it read)."""
    parts = {tuple(files) for files in result["read"]}
    assert len(parts) == 1, parts
    return set(parts.pop())


@pytest.mark.slow
def test_two_workers_stream_their_own_shards_and_match_one_process(dataset):
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    chief, other = run(["multi-worker", str(dataset)], [env_for(cluster, 0), env_for(cluster, 1)])
    assert chief["replicas"] == other["replicas"] == 2
    assert_same_weights(chief, other)
    # Each worker read the training stream from its own shard files: disjoint, and together all of them.
    n_shards = len(json.loads((dataset / "manifest.json").read_text())["shards"])
    mine, theirs = own_shards(chief), own_shards(other)
    assert not mine & theirs and len(mine | theirs) == n_shards

    # One process reading the shards as two workers do trains on the same global batches, to the same weights.
    (single,) = run(["auto", str(dataset), "2"], [env_for(None)])  # input_pipelines=2
    assert single["replicas"] == 1
    assert chief["val_mae"] == pytest.approx(single["val_mae"], rel=1e-4)
    assert_same_weights(chief, single, rtol=1e-3, atol=1e-5)
    # ... and one that reads them as one pipeline does not (the check can fail).
    (plain,) = run(["auto", str(dataset)], [env_for(None)])
    assert not all(np.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(chief["weights"], plain["weights"]))
