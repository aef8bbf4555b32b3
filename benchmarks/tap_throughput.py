"""Throughput of MEGNet feature taps (V1 and f): atomsets-tf against the original megnet.

Structures per second to go from pymatgen structures to the V1 (atom-level) and f
(structure-level) taps, split into graph building and network time. Each figure
is the median of ``--runs`` timed runs after one cold (tracing) pass. Wall-clock
ratios are only meaningful on an idle machine; the CPU-time ratio (process CPU
seconds, all threads) is less sensitive to other load.

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


def time_ours(model: MEGNet, structures, batch_size: int, runs: int) -> dict:
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
    cpu_s = statistics.median(t[2] for t in timed)
    graph_s = statistics.median(t[0] for t in timed)
    net_s = statistics.median(t[1] for t in timed)
    total = statistics.median(t[0] + t[1] for t in timed)
    n = len(structures)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="megnet-mp-2019.4.1-formation_energy", help="preset name or .hdf5 path")
    ap.add_argument("--sets", default="jdft2d,mp_ef_100", help="comma list of jdft2d, mp_ef_100, perovskites")
    ap.add_argument("--limit", type=int, default=None, help="use the first N structures of each set")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--megnet-batch-size", type=int, default=128, help="megnet's own default for predict_structures")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--megnet-python", default=os.environ.get("ATOMSETS_TF_MEGNET_PYTHON"))
    ap.add_argument("--out", default=str(RESULTS / "tap_throughput.json"))
    args = ap.parse_args(argv)

    from atomsets_tf.models.megnet.model import load_megnet

    model = load_megnet(args.model)
    hdf5 = Path(model.source.split("(")[-1].rstrip(")")) if model.source.startswith("preset") else Path(args.model)
    report = {
        "model": args.model,
        "batch_size": args.batch_size,
        "megnet_batch_size": args.megnet_batch_size,
        "runs": args.runs,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()),
        },
        "sets": {},
    }
    for name in args.sets.split(","):
        ids, structures = load_set(name, args.limit)
        ids, structures = usable(model, ids, structures)
        ours = time_ours(model, structures, args.batch_size, args.runs)
        entry = {"ours": ours}
        if args.megnet_python:
            try:
                ref = time_reference(args.megnet_python, hdf5, structures, args.megnet_batch_size, args.runs)
                entry["megnet"] = ref
                entry["ratio_vs_batched_predict_structures"] = ours["structs_per_s"] / ref["structs_per_s"]
                entry["ratio_cpu_time"] = ours["structs_per_cpu_s"] / ref["structs_per_cpu_s"]
            except Exception as exc:  # report, don't crash the benchmark
                entry["megnet_error"] = str(exc)
        else:
            entry["megnet"] = None
            entry["megnet_note"] = "no --megnet-python / $ATOMSETS_TF_MEGNET_PYTHON: reference not run side by side"
        rec = recorded_reference(args.model)
        if rec is not None and name == "mp_ef_100":
            entry["megnet_recorded"] = rec
            entry["ratio_vs_recorded_batched"] = ours["structs_per_s"] / rec["batched_structs_per_s"]
        report["sets"][name] = entry
        line = (
            f"{name:12s} n={ours['n_structures']:4d}  ours {ours['structs_per_s']:8.1f} structs/s "
            f"(graphs {ours['graph_s']:.3f}s = {100 * ours['graph_share']:.0f}%, network {ours['network_s']:.3f}s; "
            f"cold {ours['cold_s']:.1f}s)"
        )
        if entry.get("megnet"):
            ref = entry["megnet"]
            line += (
                f"\n{'':12s}        megnet {ref['structs_per_s']:8.1f} structs/s (batched predict_structures; "
                f"graphs {100 * ref['graph_share']:.0f}%)  ratio {entry['ratio_vs_batched_predict_structures']:.2f}x wall, "
                f"{entry['ratio_cpu_time']:.2f}x CPU time"
            )
        elif "ratio_vs_recorded_batched" in entry:
            line += (
                f"  megnet recorded {rec['batched_structs_per_s']:.0f}/s (not side by side)  "
                f"ratio {entry['ratio_vs_recorded_batched']:.2f}x"
            )
        print(line, flush=True)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    print(f"load average {report['machine']['loadavg_start'][0]:.1f} -> {report['machine']['loadavg_end'][0]:.1f}")
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
