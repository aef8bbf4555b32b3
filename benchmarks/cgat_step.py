"""Time the Keras CGAT port on CPU: forward and forward+backward, batch 32 and 128, 2 threads.

The batch is the golden one (matbench jdft2d mb-jdft2d-001..032; batch 128 = those 32 repeated
4x, as for the PyTorch timings in ``shared/golden/cgat``). Each case: warm-up runs (tracing),
then the median of ``--runs`` timed runs of a ``tf.function``. Forward = inference call;
forward+backward = L1 loss on column 0 and the gradients of all trainable variables.

    python benchmarks/cgat_step.py                      # small + default, batch 32 + 128
    python benchmarks/cgat_step.py --config default --batch 32 --profile
    python benchmarks/cgat_step.py --xla                # also static shapes + jit_compile

Writes ``benchmarks/results/cgat_step.json`` and prints the ratio to the PyTorch original.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.checkout, run or imported
from benchmarks.checkout import use_checkout_shared  # noqa: E402

use_checkout_shared()  # the development folder: $ATOMSETS_TF_SHARED, else the checkout's ../shared

from atomsets_tf.models.cgat.data import collate, structures_to_graphs  # noqa: E402
from atomsets_tf.models.cgat.elements import load_matscholar_embedding  # noqa: E402
from atomsets_tf.models.cgat.model import CGAT, cgat_l1_loss  # noqa: E402
from atomsets_tf.utils.io import shared_dir, write_json_atomic  # noqa: E402

CONFIGS = {
    "small": dict(elem_fea_len=32, n_graph=2, msg_heads=2),
    "default": dict(elem_fea_len=128, n_graph=5, msg_heads=5),
}


def golden_graphs():
    from pymatgen.core import Structure

    root = shared_dir()
    if root is None:
        sys.exit("shared/ folder not found (set ATOMSETS_TF_SHARED)")
    raw = json.loads(gzip.open(root / "data" / "matbench" / "matbench_jdft2d.json.gz").read())
    structures = [Structure.from_dict(row[0]) for row in raw["data"][:32]]
    return structures_to_graphs(structures, load_matscholar_embedding(), ids=raw["index"][:32])


def torch_reference() -> dict:
    root = shared_dir()
    out = {}
    for cfg in CONFIGS:
        p = None if root is None else root / "golden" / "cgat" / f"timing_{cfg}.json"
        if p is not None and p.exists():
            t = json.loads(p.read_text())
            out[cfg] = {b: {"forward": t[f"batch{b}"]["forward_nograd"]["median"],
                            "forward_backward": t[f"batch{b}"]["forward_backward"]["median"]} for b in (32, 128)}
    return out


def timed(fn, warmup: int, runs: int) -> dict:
    def once():
        t = time.perf_counter()
        out = fn()
        for x in tf.nest.flatten(out):
            if x is not None:
                x.numpy()
        return time.perf_counter() - t

    first = [once() for _ in range(warmup)]
    times = [once() for _ in range(runs)]
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "all": times, "warmup": first}


def step_functions(model: CGAT, jit: bool):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def forward(batch):
        return model(batch)

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def forward_backward(batch, y):
        with tf.GradientTape() as tape:
            loss = cgat_l1_loss(y, model(batch, training=True))
        return [loss] + tape.gradient(loss, model.trainable_variables)

    return forward, forward_backward


def profile(model: CGAT, batch: dict, warmup: int, runs: int) -> dict:
    """Where the time goes: each sub-module timed on its own (forward, and forward+backward)."""
    taps = model.compute_taps(batch, ["node_fea_0"])  # noqa: F841 - builds/warms the model
    flat_mask = tf.reshape(batch["atom_mask"], [-1]) > 0
    z_table = model.element_z_table()  # the element vectors, looked up as the model does
    atom_fea, elem_fea = tf.gather(z_table, batch["atom_z"]), tf.gather(z_table, batch["elem_z"])
    n = batch["atom_z"].shape[1]
    k = batch["nbr_idx"].shape[2]
    real = tf.cast(tf.where(flat_mask)[:, 0], tf.int32)
    pos = tf.cumsum(tf.cast(flat_mask, tf.int32)) - 1
    cid = real // n
    recv = tf.gather(pos, tf.gather(tf.reshape(batch["nbr_idx"], [-1, k]), real) + (cid * n)[:, None])
    rank = tf.gather(tf.reshape(batch["nbr_rank"], [-1, k]), real)
    x0 = tf.matmul(tf.gather(tf.reshape(atom_fea, [-1, 200]), real), model.embedding_kernel)
    table = tf.convert_to_tensor(model.nbr_embedding)
    layer = model.node_layers[1]
    aggr = layer.aggregate(x0, table, recv, rank)
    crys = model.roost(elem_fea, batch["elem_weights"])
    pooled = model.cry_pool(x0, crys, cid, tf.shape(atom_fea)[0])
    parts = {
        "node_attention_aggregate (x n_graph)": (lambda: layer.aggregate(x0, table, recv, rank), layer.attention.weights
                                                 + layer.message.weights),
        "node_hypernetwork (x n_graph)": (lambda: layer.hyper(aggr, x0, x0), layer.hyper.weights),
        "edge_mlp (x n_graph)": (lambda: model.edge_layers[0](table), model.edge_layers[0].weights),
        "roost": (lambda: model.roost(elem_fea, batch["elem_weights"]), model.roost.weights),
        "cry_pool": (lambda: model.cry_pool(x0, crys, cid, tf.shape(atom_fea)[0]), model.cry_pool.weights),
        "output_head": (lambda: model.head(pooled), model.head.weights),
    }
    def with_grad(fn, weights):
        @tf.function
        def fb():
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(fn())
            grads = tape.gradient(y, weights)
            assert all(g is not None for g in grads)
            return grads

        return fb

    out = {}
    for name, (fn, weights) in parts.items():
        out[name] = {"forward": timed(tf.function(fn), warmup, runs)["median"],
                     "forward_backward": timed(with_grad(fn, weights), warmup, runs)["median"]}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["small", "default", "both"], default="both")
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--xla", action="store_true", help="also time static_shapes=True with jit_compile=True")
    ap.add_argument("--profile", action="store_true", help="time each sub-module (batch 32)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cgat_step.json"))
    args = ap.parse_args(argv)

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    graphs = golden_graphs()
    batches = {b: {k: tf.constant(v) for k, v in collate((graphs * (b // 32 + 1))[:b]).items()} for b in args.batch}
    ref = torch_reference()
    configs = ["small", "default"] if args.config == "both" else [args.config]
    results: dict = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "tensorflow": tf.__version__,
                     "machine": platform.processor() or platform.machine(), "cases": []}
    modes = [("compact", False, False)] + ([("static+xla", True, True)] if args.xla else [])
    for cfg in configs:
        for mode, static, jit in modes:
            tf.random.set_seed(0)
            model = CGAT(**CONFIGS[cfg], static_shapes=static)
            fwd, fwb = step_functions(model, jit)
            for b in args.batch:
                batch = batches[b]
                y = tf.zeros([b])
                row = {"config": cfg, "mode": mode, "batch": b, "n_atoms": int(batch["atom_mask"].numpy().sum())}
                row["forward"] = timed(lambda batch=batch, f=fwd: f(batch), args.warmup, args.runs)
                row["forward_backward"] = timed(lambda batch=batch, y=y, f=fwb: f(batch, y), args.warmup,
                                                args.runs)
                if cfg in ref and b in ref[cfg]:
                    row["torch"] = ref[cfg][b]
                    row["speedup_forward"] = ref[cfg][b]["forward"] / row["forward"]["median"]
                    row["speedup_forward_backward"] = ref[cfg][b]["forward_backward"] / row["forward_backward"]["median"]
                results["cases"].append(row)
                print(f"{cfg:8s} {mode:10s} batch {b:4d}: forward {row['forward']['median']:.3f} s, "
                      f"forward+backward {row['forward_backward']['median']:.3f} s"
                      + (f"  (torch {row['torch']['forward']:.2f} / {row['torch']['forward_backward']:.2f} s; "
                         f"speed-up {row['speedup_forward']:.1f}x / {row['speedup_forward_backward']:.1f}x)"
                         if "torch" in row else ""), flush=True)
            if args.profile and mode == "compact":
                prof = profile(model, {k: v.numpy() for k, v in batches[args.batch[0]].items()}, args.warmup,
                               args.runs)
                results.setdefault("profile", {})[cfg] = prof
                for name, t in prof.items():
                    print(f"   profile {cfg}: {name:40s} forward {t['forward']:.4f} s, "
                          f"forward+backward {t['forward_backward']:.4f} s")
    write_json_atomic(args.out, results)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
