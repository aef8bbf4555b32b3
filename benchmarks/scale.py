"""From 10^3 to 10^6 structures: prepare throughput, training cost and peak memory (issue 13).

For each size N of a deterministic synthetic set (``benchmarks/synthetic.py``: strained and element-substituted
copies of the jdft2d or perovskite structures) this records, each in a fresh process:

* ``prepare``: structures/s of ``prepare_dataset`` for the MEGNet and the CGAT graphs, with 1 and 2 worker
  processes (the two must write byte-identical shards), and its peak RSS; the workers make the synthetic
  structures themselves (they get integers), and ``prepare-cli`` times ``atomsets-tf prepare FILE`` (structures
  read and checked in the main process, as a user's file is) at N <= 10^4;
* ``search``: side by side, on the first structures of the set, the rate of pymatgen's bare compiled neighbour
  search (``Structure.get_neighbor_list`` at CGAT's 18 Å, ``find_points_in_spheres`` at MEGNet's cutoff) against
  the graph builders', in one process;
* ``train``: seconds of training per 10^5 structures for AtomSets-V1 (on prepared V1 taps), MEGNet and CGAT,
  streamed from the prepared datasets (a fixed number of steps after one warm-up epoch);
* ``fit`` and ``tap``: peak RSS of ``atomsets-tf retrain`` (MEGNet head, a few steps per epoch, validation and
  test predictions streamed) and of ``atomsets-tf tap ... -o DIR/`` on the prepared dataset.

Every measurement is kept in ``benchmarks/results/scale.json`` as soon as it is made, and the prepared
datasets in ``--work`` (default ``runs/scale``): a rerun skips what is done, so a long run can span sessions.
The machine is shared and noisy: compare ratios measured side by side.

    python benchmarks/scale.py --sizes 1000,10000,100000
    python benchmarks/scale.py --sizes 1000000 --only prepare,fit
    python benchmarks/scale.py --table          # print the table of what is recorded
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from pymatgen.optimization.neighbors import find_points_in_spheres  # noqa: E402

from atomsets_tf.data.io import load  # noqa: E402
from atomsets_tf.data.pipeline import make_dataset  # noqa: E402
from atomsets_tf.data.prepared_writer import prepare_dataset  # noqa: E402
from atomsets_tf.models.base import BuildRequest  # noqa: E402
from atomsets_tf.models.cgat.family import CGATValue  # noqa: E402
from atomsets_tf.models.cgat.model import CGAT  # noqa: E402
from atomsets_tf.models.loading import load_model  # noqa: E402
from atomsets_tf.models.registry import DEFAULT_SOURCE, family, family_of  # noqa: E402
from atomsets_tf.utils.io import write_json_atomic  # noqa: E402
from atomsets_tf.workflows.fit import build_model  # noqa: E402
from atomsets_tf.workflows.prepare import record_builder  # noqa: E402
from benchmarks.synthetic import SyntheticEntries, SyntheticSet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
PRESETS = {"megnet": "megnet-mp-2019.4.1-formation_energy", "cgat": "cgat-perovskites"}
STAGES = ("prepare", "prepare-cli", "search", "train", "fit", "tap")
#: Structures timed for the bare neighbour search and the builders.
SEARCH_SAMPLE = 2000
TRAIN_BATCH = 128
#: The CGAT paper's network at batch 128 needs ~10 GB here (its attention over 24 neighbours x 6 heads).
PAPER_CGAT_BATCH = 32
TRAIN_STEPS = 40
#: The CGAT paper's message heads (its Methods); the other sizes are the model's defaults (128-wide nodes and
#: edges, 5 message-passing steps, the residual head), which the original's training script used.
PAPER_CGAT_HEADS = 6


def _rss_mb() -> dict:
    """Peak RSS of this process and of its (finished) children, MB (``ru_maxrss`` is in kB on Linux)."""
    return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


# ---------------------------------------------------------------------------------------------- child processes
def child_prepare(source: str, n: int, model: str, workers: int, out: str) -> dict:
    data = SyntheticSet(source, n)
    builder, parent = record_builder(PRESETS.get(model, model), DEFAULT_SOURCE if model == "atomsets-v1" else None)
    ids = data.ids()
    targets = [data.target(k) for k in range(n)]
    batch_builder = getattr(builder, "build_batch", None)
    entries = data if batch_builder is not None else range(n)
    builder = builder if batch_builder is not None else SyntheticEntries(builder, data)
    start = time.perf_counter()
    manifest = prepare_dataset(ids, entries, targets, out, builder, parent=parent, workers=workers,
                               shard_size=4096, progress=False, restart=True,
                               batch_builder=batch_builder,
                               source={"data": f"synthetic {source} n={n}"})
    wall = time.perf_counter() - start
    return {"wall_s": wall, "per_s": n / wall, "failures": len(manifest["failures"]),
            "shards": [s["sha256"] for s in manifest["shards"]], **_rss_mb()}


def child_search(source: str, n: int) -> dict:
    data = SyntheticSet(source, n)
    structures = [data[k] for k in range(min(n, SEARCH_SAMPLE))]
    out = {"n": len(structures)}
    for name in ("megnet", "cgat"):
        net = load_model(PRESETS[name])
        builder = family_of(net).record_builder(net)
        cutoff = builder.settings.get("cutoff", builder.settings.get("radius"))

        def search(s, r=float(cutoff), name=name):
            if name == "cgat":
                return s.get_neighbor_list(r)
            lattice = np.ascontiguousarray(s.lattice.matrix, dtype=float)
            cart = np.ascontiguousarray(s.cart_coords, dtype=float)
            return find_points_in_spheres(cart, cart, r=r, pbc=np.array([1, 1, 1]), lattice=lattice, tol=1e-8)

        rates = {}
        for label, fn in (("search", search), ("build", lambda s, b=builder: b(s, "x"))):
            start = time.perf_counter()
            for s in structures:
                fn(s)
            rates[label] = len(structures) / (time.perf_counter() - start)
        out[name] = {"search_per_s": rates["search"], "build_per_s": rates["build"],
                     "ratio": rates["build"] / rates["search"], "cutoff": cutoff}
    return out


def _trainable(model: str, dataset: str):
    """A compiled Keras model, the streamed training data of ``dataset`` for ``model`` and its batch size
    (streamed whatever the size: ``stream_above=0``)."""
    table = load(dataset)
    targets = table.require_targets()
    if model == "cgat-paper":  # the CGAT paper's network (a random start): what its 1.8 M pretraining trains
        preset = load_model(PRESETS["cgat"])
        cgat = CGAT(msg_heads=PAPER_CGAT_HEADS, elements=preset.elements)
        cgat.set_element_embedding(preset.element_embedding())
        cgat.fit_normalisation(targets)
        net = CGATValue(cgat)
        sets = family_of(cgat).examples(cgat, table, stream_above=0)
    elif model == "atomsets-v1":
        sets = family("atomsets").examples(BuildRequest(model, features_from=DEFAULT_SOURCE), table, stream_above=0)
        net = build_model(model, "regression", targets, sets=sets)
    else:
        parent = load_model(PRESETS[model])
        sets = family_of(parent).examples(parent, table, stream_above=0)
        net = (keras.Model(parent.keras_model.input, parent.keras_model.output["prediction"]) if model == "megnet"
               else CGATValue(parent))
    net.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mae")
    batch = PAPER_CGAT_BATCH if model == "cgat-paper" else TRAIN_BATCH
    return net, make_dataset(sets, targets, batch, shuffle=True), batch


def child_train(model: str, dataset: str, steps: int) -> dict:
    net, data, batch = _trainable(model, dataset)
    net.fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # tracing, warm-up
    start = time.perf_counter()
    net.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    per_structure = (time.perf_counter() - start) / (steps * batch)
    return {"per_structure_s": per_structure, "epoch_s_per_1e5": per_structure * 1e5, **_rss_mb()}


def run_child(stage: str, **kwargs) -> dict:
    """Run one measurement in a fresh Python (clean peak RSS); returns what it printed.

    The child's main module is ``-c`` code, not this file: Python re-imports a main script in every worker
    process of ``prepare`` (forkserver / spawn), and this one imports TensorFlow.
    """
    code = "import sys; from benchmarks.scale import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "child", stage, json.dumps(kwargs)]
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{stage} {kwargs} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cli(args: list[str]) -> dict:
    """Run ``atomsets-tf ARGS`` in a fresh process; its wall time and peak RSS (of it and its children)."""
    code = ("import resource, sys, time; from atomsets_tf.cli import main; t = time.perf_counter(); "
            "rc = main(sys.argv[1:]); import json; print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t, "
            "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    out = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"rc": r.returncode}
    if out.get("rc") != 0:
        raise RuntimeError(f"atomsets-tf {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return out


# ---------------------------------------------------------------------------------------------- the driver
def _load(path: Path) -> dict:
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results["path"] = str(path)
    return results


def _record(results: dict, key: str, value: dict) -> None:
    results["runs"][key] = {**value, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(Path(results["path"]), {"runs": results["runs"]})
    print(f"  {key}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in value.items() if k != "shards"), flush=True)


def _measure(results: dict, key: str, redo: bool, fn) -> dict | None:
    """``results['runs'][key]``, measured by ``fn()`` unless already recorded (resumable runs)."""
    if key in results["runs"] and not redo:
        return results["runs"][key]
    try:
        value = fn()
    except RuntimeError as exc:
        print(f"  {key}: FAILED {str(exc).splitlines()[0]}", flush=True)
        return None
    _record(results, key, value)
    return value


def _prepare_stage(results, source, n, work: Path, redo, models=("megnet", "cgat", "atomsets-v1")) -> None:
    for model in models:
        workers = (1,) if model == "atomsets-v1" else (1, 2)  # taps run the network in the preparing process
        for w in workers:
            out = work / f"{source}-{n}-{model}" if w == 1 else work / f"{source}-{n}-{model}-w{w}"
            one = results["runs"].get(f"prepare/{source}/{n}/{model}/w1", {})

            def measure(m=model, w=w, o=out, one=one):
                r = run_child("prepare", source=source, n=n, model=m, workers=w, out=str(o))
                if w > 1:
                    r["identical_to_w1"] = one.get("shards") == r["shards"]
                    shutil.rmtree(o, ignore_errors=True)  # the w1 copy is kept for the other stages
                return r

            _measure(results, f"prepare/{source}/{n}/{model}/w{w}", redo, measure)


def _prepare_cli_stage(results, source, n, work: Path, redo) -> None:
    """``atomsets-tf prepare FILE``: the file read and checked in the main process, then 1 or 2 workers."""
    data = work / f"{source}-{n}.json.gz"
    if not data.is_file():
        data.parent.mkdir(parents=True, exist_ok=True)
        SyntheticSet(source, n).write_json(data)
    for model in ("megnet", "cgat"):
        for w in (1, 2):
            out = work / f"cli-{source}-{n}-{model}-w{w}"
            r = _measure(results, f"prepare-cli/{source}/{n}/{model}/w{w}", redo, lambda m=model, w=w, o=out: run_cli(
                ["prepare", str(data), "--for", PRESETS[m], "-o", str(o), "--workers", str(w), "--quiet",
                 "--restart"]))
            if r is not None:
                r["per_s"] = n / r["wall_s"]
            shutil.rmtree(out, ignore_errors=True)


def _other_stages(results, stages, source, n, work: Path, redo) -> None:
    data = {m: work / f"{source}-{n}-{m}" for m in ("megnet", "cgat", "atomsets-v1")}
    data["cgat-paper"] = data["cgat"]  # the same graphs (radius, neighbours, elements)
    if "search" in stages:
        _measure(results, f"search/{source}/{n}", redo, lambda: run_child("search", source=source, n=n))
    if "train" in stages:
        for model, path in data.items():
            steps = TRAIN_STEPS if model != "cgat-paper" else TRAIN_STEPS // 4
            _measure(results, f"train/{source}/{n}/{model}", redo,
                     lambda m=model, p=path, k=steps: run_child("train", model=m, dataset=str(p), steps=k))
    if "fit" in stages:
        out = work / f"fit-{source}-{n}"
        _measure(results, f"fit/{source}/{n}/megnet", redo, lambda: run_cli(
            ["retrain", PRESETS["megnet"], str(data["megnet"]), "--mode", "head", "--epochs", "1", "--steps-per-epoch",
             "20", "--batch-size", str(TRAIN_BATCH), "--stream-above", "0", "--quiet", "--restart", "-o", str(out)]))
    if "tap" in stages:
        out = work / f"tap-{source}-{n}"
        _measure(results, f"tap/{source}/{n}/megnet", redo, lambda: run_cli(
            ["tap", PRESETS["megnet"], str(data["megnet"]), "--layer", "V1", "--layer", "f", "-o", f"{out}/"]))
        shutil.rmtree(out, ignore_errors=True)


def _get(results: dict, key: str, field: str):
    value = results["runs"].get(key, {}).get(field)
    return float("nan") if value is None else value


def table(results: dict, source: str) -> str:
    """The table of what is recorded for ``source``, one row per size."""
    sizes = sorted({int(k.split("/")[2]) for k in results["runs"] if k.split("/")[1] == source})
    head = ("| N | MEGNet prep/s 1w | 2w | CGAT prep/s 1w | 2w | V1 taps/s | prep RSS MB (CGAT 2w) | "
            "train s/1e5 V1 | MEGNet | CGAT | fit RSS MB | tap RSS MB |")
    lines = [head, "|" + "|".join("---" for _ in range(12)) + "|"]
    for n in sizes:
        p = f"prepare/{source}/{n}"
        row = [n, _get(results, f"{p}/megnet/w1", "per_s"), _get(results, f"{p}/megnet/w2", "per_s"),
               _get(results, f"{p}/cgat/w1", "per_s"), _get(results, f"{p}/cgat/w2", "per_s"),
               _get(results, f"{p}/atomsets-v1/w1", "per_s"),
               max(_get(results, f"{p}/cgat/w2", "rss_mb"), _get(results, f"{p}/cgat/w2", "children_rss_mb")),
               *(_get(results, f"train/{source}/{n}/{m}", "epoch_s_per_1e5") for m in ("atomsets-v1", "megnet", "cgat")),
               _get(results, f"fit/{source}/{n}/megnet", "rss_mb"), _get(results, f"tap/{source}/{n}/megnet", "rss_mb")]
        lines.append("| " + " | ".join(f"{v:,.0f}" if isinstance(v, (int, float)) and v == v else "–" for v in row)
                     + " |")
    return "\n".join(lines)


def targets(results: dict, source: str) -> list[str]:
    """Each target of issue 13 with its measured figure (where recorded)."""
    runs = results["runs"]
    sizes = sorted({int(k.split("/")[2]) for k in runs if k.split("/")[1] == source})
    out = []
    searches = [v for k, v in runs.items() if k.startswith(f"search/{source}/")]
    if searches:
        s = searches[-1]
        out.append(f"CGAT graph building / bare 18 Å neighbour search: {s['cgat']['ratio']:.2f} (target >= 0.5); "
                   f"MEGNet: {s['megnet']['ratio']:.2f}")
    for model in ("megnet", "cgat"):
        for n in sizes:
            one, two = (runs.get(f"prepare/{source}/{n}/{model}/w{w}") for w in (1, 2))
            if one and two:
                out.append(f"prepare {model} N={n}: 2 workers / 1 = {two['per_s'] / one['per_s']:.2f} "
                           f"(target >= 1.7), shards identical: {two.get('identical_to_w1')}")
        per = {n: 1 / runs[f"prepare/{source}/{n}/{model}/w1"]["per_s"] for n in sizes
               if f"prepare/{source}/{n}/{model}/w1" in runs}
        if 10**4 in per and max(per) > 10**4:
            big = max(per)
            out.append(f"prepare {model}: per-structure time at N={big} / at 10^4 = {per[big] / per[10**4]:.2f} "
                       "(target <= 1.3)")
    for model in ("megnet", "cgat"):
        for n in sizes:
            one, two = (runs.get(f"prepare-cli/{source}/{n}/{model}/w{w}") for w in (1, 2))
            if one and two:
                out.append(f"atomsets-tf prepare FILE {model} N={n}: 2 workers / 1 = "
                           f"{one['wall_s'] / two['wall_s']:.2f} (JSON read in the main process, structures "
                           "parsed in the workers)")
    fits = {n: runs[f"fit/{source}/{n}/megnet"]["rss_mb"] for n in sizes if f"fit/{source}/{n}/megnet" in runs}
    if 10**4 in fits and max(fits) > 10**4:
        big = max(fits)
        out.append(f"fit (MEGNet retrain) peak RSS at N={big} / at 10^4 = {fits[big] / fits[10**4]:.2f} "
                   "(target <= 1.5)")
    for n in sizes:
        v1, mg = (runs.get(f"train/{source}/{n}/{m}") for m in ("atomsets-v1", "megnet"))
        if v1 and mg:
            out.append(f"N={n}: MEGNet / AtomSets-V1 training time per structure = "
                       f"{mg['per_structure_s'] / v1['per_structure_s']:.1f}x (paper: > 30x on MP e_form)")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        fn = {"prepare": child_prepare, "search": child_search, "train": child_train}[argv[1]]
        print(json.dumps(fn(**json.loads(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--source", default="jdft2d", choices=("jdft2d", "perovskites"))
    parser.add_argument("--only", default=",".join(STAGES), help=f"stages, of {', '.join(STAGES)}")
    parser.add_argument("--work", default=str(ROOT / "runs" / "scale"), help="where the prepared datasets go")
    parser.add_argument("--redo", action="store_true", help="measure again what is recorded")
    parser.add_argument("--prepare-models", default="megnet,cgat,atomsets-v1",
                        help="what the prepare stage prepares (atomsets-v1 taps run the MEGNet on every structure)")
    parser.add_argument("--table", action="store_true", help="print the recorded table and targets only")
    parser.add_argument("--results", default=str(RESULTS), help="the JSON file of the measurements")
    args = parser.parse_args(argv)
    results = _load(Path(args.results))
    if not args.table:
        stages = set(args.only.split(","))
        work = Path(args.work)
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"N = {n}", flush=True)
            if "prepare" in stages:
                _prepare_stage(results, args.source, n, work, args.redo, args.prepare_models.split(","))
            if "prepare-cli" in stages and n <= 10**4:
                _prepare_cli_stage(results, args.source, n, work, args.redo)
            _other_stages(results, stages, args.source, n, work, args.redo)
        results = _load(Path(args.results))
    print(table(results, args.source))
    print("\n".join(targets(results, args.source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
