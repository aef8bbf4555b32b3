"""Re-measure each preset's recorded test metric with today's code (graph builders, loaders, checks).

A preset in ``pretrained/`` records the test metric of its fold-0 model (``metrics.json``). This
script rebuilds that fold's split with the recorded protocol and seed, predicts its test entries
with the preset as shipped, and prints the recorded and re-measured figures side by side, so that
a change in how inputs are built (e.g. CGAT's canonical neighbour order) shows in the numbers.

    python benchmarks/preset_recheck.py                       # every preset with local data
    python benchmarks/preset_recheck.py cgat-perovskites --out benchmarks/results/preset_recheck.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from atomsets_tf.data.io import load  # noqa: E402
from atomsets_tf.data.splits import make_splits  # noqa: E402
from atomsets_tf.models.loading import load_model, predict_table  # noqa: E402
from atomsets_tf.training.metrics import score  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "pretrained"


def recheck(name: str) -> dict:
    """The recorded and the re-measured fold-0 test metric of preset ``name``."""
    record = json.loads((PRETRAINED / name / "metrics.json").read_text())
    bench, fold0 = record["benchmark"], record["fold_0"]
    data = fold0["data"]  # a task name, or a path relative to the repository root
    table = load(data if (ROOT / data).suffix == "" else str(ROOT / data))
    _, _, test = make_splits(table, bench["protocol"], fold0["fold"], fold0["training"]["seed"],
                             fold0.get("val_fraction", 0.1))
    model = load_model(name)
    subset = table.subset(test)
    predictions = predict_table(model, subset, 64)
    metric = bench["metric"]
    measured = score(fold0["task_type"], subset.targets, np.asarray(predictions, dtype=np.float64))[metric]
    recorded = bench["folds"][0]["test"]
    return {"preset": name, "metric": metric, "n_test": int(len(test)), "recorded": recorded,
            "measured": float(measured), "relative_change": float(measured / recorded - 1.0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="preset names (default: every preset in pretrained/)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "preset_recheck.json"))
    args = parser.parse_args(argv)
    names = args.names or sorted(p.name for p in PRETRAINED.iterdir() if (p / "metrics.json").is_file())
    rows = [recheck(n) for n in names]
    print(f"{'preset':<24} {'metric':<8} {'n_test':>6} {'recorded':>10} {'measured':>10} {'change':>9}")
    for r in rows:
        print(f"{r['preset']:<24} {r['metric']:<8} {r['n_test']:>6} {r['recorded']:>10.5g} {r['measured']:>10.5g} "
              f"{100 * r['relative_change']:>8.3f}%")
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
