"""Throughput of MEGNet feature taps (V1 and f): atomsets-tf against the original megnet.

Structures per second to go from pymatgen structures to the V1 (atom-level) and f
(structure-level) taps, split into graph building and network time. Each figure
is the median of ``--runs`` timed runs after one cold (tracing) pass, over
``--rounds`` rounds that alternate ours and megnet (so both see the same load).
Wall-clock ratios are only meaningful on an idle machine; the CPU-time ratio
(process CPU seconds, all threads) is less sensitive to other load.

Ours runs with the tap path's default batching (``--batch-size auto``: batches
planned by cost, see ``atomsets_tf.models.megnet.batches.plan_batches``) and, with
``--compare-batch-size 32``, also with the old fixed batches of 32 in the same
process (the "before" figure). ``--profile`` adds where our time goes: graph
building, padding, network and unpadding timers, the padding waste per batch
(padded / real atoms and bonds), the cProfile functions of one tap, and the
TensorFlow op types of the network (TensorFlow's profiler).

The original megnet runs in a subprocess (it needs tf-keras and
``TF_USE_LEGACY_KERAS=1``, which the package never uses): give it a Python that has
megnet 1.3.2 and tf-keras with ``--megnet-python`` or ``$ATOMSETS_TF_MEGNET_PYTHON``
(e.g. a venv made with ``pip install "atomsets-tf[megnet]" tf-keras``). The
reference is megnet's fastest mode, the batched ``predict_structures``. Without
such a Python, the script reports megnet's figure recorded in
``shared/golden/megnet/timing_set_C.json`` (100 MP structures, another run), and
says so.

    python benchmarks/tap_throughput.py
    python benchmarks/tap_throughput.py --sets mp_ef_100 --runs 5 --batch-size 128
    python benchmarks/tap_throughput.py --megnet-python ../venv-megnet/bin/python --compare-batch-size 32 --profile
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.checkout, run or imported
from benchmarks.checkout import use_checkout_shared  # noqa: E402

use_checkout_shared()  # the development folder: $ATOMSETS_TF_SHARED, else the checkout's ../shared

from atomsets_tf.models.megnet.model import MEGNet  # noqa: E402
from atomsets_tf.utils.io import shared_dir, write_json_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GOLDEN_TAG = {
    "megnet-mp-2019.4.1-formation_energy": "mp-2019.4.1_formation_energy",
    "megnet-mp-2019.4.1-log10K": "mp-2019.4.1_log10K",
    "megnet-mp-2019.4.1-efermi": "mp-2019.4.1_efermi",
    "megnet-mp-2018.6.1-formation_energy": "mp-2018.6.1_formation_energy",
}

_REFERENCE_SCRIPT = r"""
import json, os, sys, time, statistics, warnings
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.simplefilter("ignore")
from pymatgen.core import Structure
from megnet.models import MEGNetModel
args = json.load(open(sys.argv[1]))
model = MEGNetModel.from_file(args["hdf5"])
structures = [Structure.from_dict(d) for d in json.load(open(args["structures"]))]
def run():
    t0 = time.perf_counter()
    graphs = [model.graph_converter.convert(s) for s in structures]
    t1 = time.perf_counter()
    c1 = time.process_time()
    model.predict_structures(structures, batch_size=args["batch_size"])  # converts again, then predicts
    t2 = time.perf_counter()
    c2 = time.process_time()
    return t1 - t0, t2 - t1, c2 - c1
run()
runs = [run() for _ in range(args["runs"])]
print(json.dumps({"convert_s": [r[0] for r in runs], "predict_structures_s": [r[1] for r in runs],
                  "predict_structures_cpu_s": [r[2] for r in runs]}))
"""


def load_set(name: str, limit: int | None) -> tuple[list[str], list]:
    from pymatgen.core import Structure

    shared = shared_dir()
    if shared is None:
        raise SystemExit("shared/ not found (set ATOMSETS_TF_SHARED)")
    if name == "jdft2d":
        with gzip.open(shared / "data" / "matbench" / "matbench_jdft2d.json.gz", "rt") as fh:
            d = json.load(fh)
        col = d["columns"].index("structure")
        ids, dicts = d["index"], [row[col] for row in d["data"]]
    elif name == "mp_ef_100":
        d = json.loads((shared / "data" / "structures" / "mp_ef_100.json").read_text())
        dicts = d["structure"]
        ids = [f"mp_ef_100-{i:03d}" for i in range(len(dicts))]
    elif name == "perovskites":
        with gzip.open(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz", "rt") as fh:
            d = json.load(fh)
        col = d["columns"].index("structure")
        ids, dicts = d["index"], [row[col] for row in d["data"]]
    else:
        raise SystemExit(f"unknown set {name!r}")
    if limit:
        ids, dicts = ids[:limit], dicts[:limit]
    return list(ids), [Structure.from_dict(x) for x in dicts]


def usable(model: MEGNet, ids, structures):
    """Drop structures megnet cannot featurise either (no bond within the cutoff)."""
    keep_ids, keep = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, s in zip(ids, structures, strict=True):
            try:
                model.graph(s)
            except Exception:
                continue
            keep_ids.append(i)
            keep.append(s)
    return keep_ids, keep


def time_ours(model: MEGNet, structures, batch_size: int | None, runs: int) -> dict:
    """Median graph-building, network and total times of ``runs`` taps (V1 and f), after one cold pass."""
    def once():
        c0 = time.process_time()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graphs = model.graphs(structures)
        t1 = time.perf_counter()
        model.run_graphs(graphs, ["V1", "f"], batch_size=batch_size)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, time.process_time() - c0

    cold = once()
    timed = [once() for _ in range(runs)]
    return _summary(len(structures), cold, timed)


def _summary(n: int, cold: tuple, timed: list[tuple]) -> dict:
    """Throughput figures from ``(graph_s, network_s, cpu_s)`` runs."""
    cpu_s = statistics.median(t[2] for t in timed)
    graph_s = statistics.median(t[0] for t in timed)
    net_s = statistics.median(t[1] for t in timed)
    total = statistics.median(t[0] + t[1] for t in timed)
    return {
        "n_structures": n,
        "cold_s": cold[0] + cold[1],
        "cpu_s": cpu_s,
        "structs_per_cpu_s": n / cpu_s,
        "graph_s": graph_s,
        "network_s": net_s,
        "total_s": total,
        "structs_per_s": n / total,
        "graph_share": graph_s / total,
    }


def merge_rounds(rounds: list[dict]) -> dict:
    """One entry from several rounds' entries: the median of each figure (throughputs recomputed)."""
    if len(rounds) == 1:
        return rounds[0]
    out = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if isinstance(rounds[0][k], (int, float))}
    n = rounds[0]["n_structures"]
    out["n_structures"] = n
    total = out.get("total_s", out.get("predict_structures_s"))
    out["structs_per_s"] = n / total
    out["structs_per_cpu_s"] = n / out["cpu_s"]
    out["rounds"] = len(rounds)
    return out


def padding_waste(graphs, plan) -> dict:
    """Padded / real atoms and bonds of a batch plan, overall and per batch."""
    from atomsets_tf.data.padding import padded_length

    rows = []
    for idx in plan:
        chunk = [graphs[i] for i in idx]
        atoms, bonds = [g.n_atoms for g in chunk], [g.n_bonds for g in chunk]
        rows.append({"rows": len(chunk), "padded_atoms": len(chunk) * padded_length(max(atoms)),
                     "real_atoms": sum(atoms), "padded_bonds": len(chunk) * padded_length(max(bonds)),
                     "real_bonds": sum(bonds)})
    per_batch_bonds = [r["padded_bonds"] / r["real_bonds"] for r in rows]
    return {
        "n_batches": len(rows),
        "distinct_shapes": len({(r["rows"], r["padded_atoms"], r["padded_bonds"]) for r in rows}),
        "atoms_padded_over_real": sum(r["padded_atoms"] for r in rows) / sum(r["real_atoms"] for r in rows),
        "bonds_padded_over_real": sum(r["padded_bonds"] for r in rows) / sum(r["real_bonds"] for r in rows),
        "bonds_padded_over_real_per_batch": {"min": min(per_batch_bonds), "median": statistics.median(per_batch_bonds),
                                             "max": max(per_batch_bonds)},
        "batches": rows,
    }


def stage_times(model: MEGNet, structures, batch_size: int | None, runs: int) -> dict:
    """Median seconds of each stage of a tap: graphs, plan, padding, network (+ .numpy()), unpadding."""
    from atomsets_tf.models.megnet.batches import plan_batches
    from atomsets_tf.models.megnet.graph import batch_graphs

    fn = model._function()
    stages: dict[str, list[float]] = {k: [] for k in ("graphs", "plan", "padding", "network", "unpadding")}
    for run in range(runs + 1):
        marks = [time.perf_counter()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graphs = model.graphs(structures)
        marks.append(time.perf_counter())
        plan = plan_batches([g.n_bonds for g in graphs], batch_size)
        marks.append(time.perf_counter())
        batches = [batch_graphs([graphs[i] for i in idx]) for idx in plan]
        marks.append(time.perf_counter())
        outs = [{k: v.numpy() for k, v in fn(b).items() if k in ("V1", "f")} for b in batches]
        marks.append(time.perf_counter())
        for idx, out in zip(plan, outs, strict=True):
            _ = [out["V1"][r, : graphs[i].n_atoms] for r, i in enumerate(idx)] + [out["f"][r] for r in range(len(idx))]
        marks.append(time.perf_counter())
        if run:  # the first run traces
            for k, a, b in zip(stages, marks[:-1], marks[1:], strict=True):
                stages[k].append(b - a)
    medians = {k: statistics.median(v) for k, v in stages.items()}
    total = sum(medians.values())
    return {"seconds": medians, "shares": {k: v / total for k, v in medians.items()},
            "padding_waste": padding_waste(graphs, plan)}


def cprofile_top(model: MEGNet, structures, batch_size: int | None, limit: int = 15) -> list[dict]:
    """The ``limit`` functions with the most own time in one tap (after a warm-up), from cProfile."""
    import cProfile
    import pstats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.tap(structures, ["V1", "f"], batch_size=batch_size)
        prof = cProfile.Profile()
        prof.enable()
        model.tap(structures, ["V1", "f"], batch_size=batch_size)
        prof.disable()
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    return [{"function": f"{Path(f).name}:{line}({name})", "calls": nc, "own_s": tt, "cumulative_s": ct}
            for (f, line, name), (_cc, nc, tt, ct, _callers) in rows]


def op_profile(model: MEGNet, structures, batch_size: int | None, limit: int = 15) -> dict:
    """Time per TensorFlow op type over one pass of the network (TensorFlow's profiler, summed over threads)."""
    import collections
    import glob

    import tensorflow as tf

    from atomsets_tf.models.megnet.batches import plan_batches
    from atomsets_tf.models.megnet.graph import batch_graphs

    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TensorFlow's own copy of the trace format
    except ImportError:
        return {"error": "tensorflow.tsl.profiler.protobuf.xplane_pb2 not found"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = model.graphs(structures)
    batches = [batch_graphs([graphs[i] for i in idx]) for idx in plan_batches([g.n_bonds for g in graphs], batch_size)]
    fn = model._function()
    for b in batches:
        fn(b)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for b in batches:
            fn(b)["f"].numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    seconds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for ev in line.events:
                name = plane.event_metadata[ev.metadata_id].name
                if ":" in name and "::" not in name:  # "ExecutorState::Process" spans the ops
                    seconds[name.rsplit(":", 1)[-1]] += ev.duration_ps / 1e12
                    counts[name.rsplit(":", 1)[-1]] += 1
    total = sum(seconds.values())
    return {"op_seconds_total": total, "network_calls": len(batches),
            "op_events_recorded": sum(counts.values()),  # the profiler may drop some: shares, not counts, matter
            "top": [{"op": op, "seconds": t, "share": t / total, "count": counts[op]}
                    for op, t in seconds.most_common(limit)]}


def time_reference(python: str, hdf5: Path, structures, batch_size: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sp = Path(tmp) / "structures.json"
        sp.write_text(json.dumps([s.as_dict() for s in structures]))
        ap = Path(tmp) / "args.json"
        ap.write_text(json.dumps({"hdf5": str(hdf5), "structures": str(sp), "batch_size": batch_size, "runs": runs}))
        script = Path(tmp) / "ref.py"
        script.write_text(_REFERENCE_SCRIPT)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
        proc = subprocess.run([python, str(script), str(ap)], capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "reference failed")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    total = statistics.median(res["predict_structures_s"])  # graph conversion + network
    convert = statistics.median(res["convert_s"])
    cpu = statistics.median(res["predict_structures_cpu_s"])
    return {
        "cpu_s": cpu,
        "structs_per_cpu_s": len(structures) / cpu,
        "n_structures": len(structures),
        "convert_s": convert,
        "predict_structures_s": total,
        "structs_per_s": len(structures) / total,
        "graph_share": convert / total,
    }


def recorded_reference(preset: str) -> dict | None:
    shared = shared_dir()
    tag = GOLDEN_TAG.get(preset)
    path = None if shared is None else shared / "golden" / "megnet" / "timing_set_C.json"
    if tag is None or path is None or not path.is_file():
        return None
    rec = json.loads(path.read_text())["models"].get(tag)
    if not rec:
        return None
    return {
        "source": "shared/golden/megnet/timing_set_C.json (recorded on another run, set C only, loaded machine)",
        "batched_structs_per_s": rec["batched_structs_per_s"],
        "one_at_a_time_structs_per_s": rec["one_at_a_time_structs_per_s"],
    }


def _parse_batch_size(text: str | None) -> int | None:
    return None if text in (None, "auto") else int(text)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="megnet-mp-2019.4.1-formation_energy", help="preset name or .hdf5 path")
    ap.add_argument("--sets", default="jdft2d,mp_ef_100", help="comma list of jdft2d, mp_ef_100, perovskites")
    ap.add_argument("--limit", type=int, default=None, help="use the first N structures of each set")
    ap.add_argument("--batch-size", type=_parse_batch_size, default="auto",
                    help="ours: structures per batch, or 'auto' (default: batches planned by cost)")
    ap.add_argument("--compare-batch-size", default=None, metavar="N",
                    help="also time ours with this batch size (e.g. 32, the old default, or 'auto'), side by side")
    ap.add_argument("--megnet-batch-size", type=int, default=128, help="megnet's own default for predict_structures")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternate ours and megnet this many times")
    ap.add_argument("--profile", action="store_true", help="stage timers, padding waste, cProfile and TF op profile")
    ap.add_argument("--megnet-python", default=os.environ.get("ATOMSETS_TF_MEGNET_PYTHON"))
    ap.add_argument("--out", default=str(RESULTS / "tap_throughput.json"))
    return ap.parse_args(argv)


def _label(batch_size: int | None) -> str:
    return "auto" if batch_size is None else str(batch_size)


def run_set(args, model: MEGNet, hdf5: Path, name: str) -> dict:
    """Every measurement of one structure set: ours (and the comparison batch size), megnet, profile."""
    ids, structures = load_set(name, args.limit)
    ids, structures = usable(model, ids, structures)
    sizes = [args.batch_size]
    if args.compare_batch_size is not None and _parse_batch_size(args.compare_batch_size) != args.batch_size:
        sizes.append(_parse_batch_size(args.compare_batch_size))
    ours_rounds: dict[str, list[dict]] = {_label(b): [] for b in sizes}
    ref_rounds: list[dict] = []
    entry: dict = {}
    for _ in range(max(args.rounds, 1)):
        for b in sizes:
            ours_rounds[_label(b)].append(time_ours(model, structures, b, args.runs))
        if args.megnet_python:
            try:
                ref_rounds.append(time_reference(args.megnet_python, hdf5, structures, args.megnet_batch_size,
                                                 args.runs))
            except Exception as exc:  # report, don't crash the benchmark
                entry["megnet_error"] = str(exc)
    entry["ours"] = merge_rounds(ours_rounds[_label(args.batch_size)])
    entry["ours"]["batch_size"] = _label(args.batch_size)
    for b in sizes[1:]:
        entry[f"ours_batch_size_{_label(b)}"] = merge_rounds(ours_rounds[_label(b)])
        entry[f"speedup_vs_batch_size_{_label(b)}"] = entry["ours"]["structs_per_s"] / \
            entry[f"ours_batch_size_{_label(b)}"]["structs_per_s"]
    if ref_rounds:
        ref = entry["megnet"] = merge_rounds(ref_rounds)
        entry["ratio_vs_batched_predict_structures"] = entry["ours"]["structs_per_s"] / ref["structs_per_s"]
        entry["ratio_cpu_time"] = entry["ours"]["structs_per_cpu_s"] / ref["structs_per_cpu_s"]
        for b in sizes[1:]:
            other = entry[f"ours_batch_size_{_label(b)}"]
            entry[f"ratio_vs_batched_predict_structures_batch_size_{_label(b)}"] = \
                other["structs_per_s"] / ref["structs_per_s"]
            entry[f"ratio_cpu_time_batch_size_{_label(b)}"] = other["structs_per_cpu_s"] / ref["structs_per_cpu_s"]
    elif not args.megnet_python:
        entry["megnet"] = None
        entry["megnet_note"] = "no --megnet-python / $ATOMSETS_TF_MEGNET_PYTHON: reference not run side by side"
    rec = recorded_reference(args.model)
    if rec is not None and name == "mp_ef_100":
        entry["megnet_recorded"] = rec
        entry["ratio_vs_recorded_batched"] = entry["ours"]["structs_per_s"] / rec["batched_structs_per_s"]
    if args.profile:
        entry["profile"] = {_label(b): {"stages": stage_times(model, structures, b, args.runs),
                                        "cprofile_top": cprofile_top(model, structures, b),
                                        "tf_ops": op_profile(model, structures, b)} for b in sizes}
    return entry


def print_set(name: str, entry: dict) -> None:
    ours = entry["ours"]
    line = (
        f"{name:12s} n={ours['n_structures']:4d}  ours (batch {ours['batch_size']}) {ours['structs_per_s']:8.1f} "
        f"structs/s, {ours['structs_per_cpu_s']:7.1f}/CPU-s (graphs {ours['graph_s']:.3f}s = "
        f"{100 * ours['graph_share']:.0f}%, network {ours['network_s']:.3f}s; cold {ours['cold_s']:.1f}s)"
    )
    for key, other in entry.items():
        if key.startswith("ours_batch_size_"):
            b = key.removeprefix("ours_batch_size_")
            line += (f"\n{'':12s}        ours (batch {b}) {other['structs_per_s']:8.1f} structs/s, "
                     f"{other['structs_per_cpu_s']:7.1f}/CPU-s: auto is {entry[f'speedup_vs_batch_size_{b}']:.2f}x")
            if f"ratio_cpu_time_batch_size_{b}" in entry:
                line += (f"; vs megnet {entry[f'ratio_vs_batched_predict_structures_batch_size_{b}']:.2f}x wall, "
                         f"{entry[f'ratio_cpu_time_batch_size_{b}']:.2f}x CPU time")
    if entry.get("megnet"):
        ref = entry["megnet"]
        line += (
            f"\n{'':12s}        megnet {ref['structs_per_s']:8.1f} structs/s, {ref['structs_per_cpu_s']:7.1f}/CPU-s "
            f"(batched predict_structures; graphs {100 * ref['graph_share']:.0f}%)  ratio "
            f"{entry['ratio_vs_batched_predict_structures']:.2f}x wall, {entry['ratio_cpu_time']:.2f}x CPU time"
        )
    elif "ratio_vs_recorded_batched" in entry:
        rec = entry["megnet_recorded"]
        line += (f"  megnet recorded {rec['batched_structs_per_s']:.0f}/s (not side by side)  "
                 f"ratio {entry['ratio_vs_recorded_batched']:.2f}x")
    for label, prof in entry.get("profile", {}).items():
        st, waste = prof["stages"], prof["stages"]["padding_waste"]
        line += (f"\n{'':12s}        profile (batch {label}): " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in st["shares"].items()) + f"; {waste['n_batches']} batches, padded/real "
            f"atoms {waste['atoms_padded_over_real']:.2f}, bonds {waste['bonds_padded_over_real']:.2f}")
        ops = prof["tf_ops"].get("top", [])[:6]
        if ops:
            line += f"\n{'':12s}        TF ops: " + ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in ops)
    print(line, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from atomsets_tf.models.megnet.model import load_megnet

    model = load_megnet(args.model)
    hdf5 = Path(model.source.split("(")[-1].rstrip(")")) if model.source.startswith("preset") else Path(args.model)
    report = {
        "model": args.model,
        "batch_size": _label(args.batch_size),
        "megnet_batch_size": args.megnet_batch_size,
        "runs": args.runs,
        "rounds": args.rounds,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()),
        },
        "sets": {},
    }
    for name in args.sets.split(","):
        report["sets"][name] = run_set(args, model, hdf5, name)
        print_set(name, report["sets"][name])
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    print(f"load average {report['machine']['loadavg_start'][0]:.1f} -> {report['machine']['loadavg_end'][0]:.1f}")
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
