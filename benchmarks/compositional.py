"""AtomSets and AtomSets-V0 on the four Matbench composition tasks, official 5 folds.

Prints a table beside the AtomSets paper's Table 2 and writes
``benchmarks/results/compositional.json``. Not a test: it takes a while.

    python benchmarks/compositional.py                      # everything
    python benchmarks/compositional.py --tasks steels --folds 0,1 --epochs 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from atomsets_tf.data.io import load  # noqa: E402
from atomsets_tf.training.fit import ModelConfig, TrainingConfig, fit, versions  # noqa: E402
from atomsets_tf.utils.io import write_json_atomic  # noqa: E402

#: The AtomSets paper, Table 2: MAE (MPa, meV/atom, eV) or ROC-AUC.
PAPER = {
    "matbench_steels": {"atomsets": (109, 14), "atomsets-v0": (90, 25)},
    "matbench_jdft2d": {"atomsets": (52, 7), "atomsets-v0": (51, 6), "atomsets-v1": (40, 5), "atomsets-v2": (48, 9),
                        "atomsets-v3": (54, 7), "mlp-f": (55, 2)},
    "matbench_expt_gap": {"atomsets": (0.45, 0.02), "atomsets-v0": (0.43, 0.03)},
    "matbench_expt_is_metal": {"atomsets": (0.94, 0.02), "atomsets-v0": (0.94, 0.01)},
    "matbench_glass": {"atomsets": (0.92, 0.02), "atomsets-v0": (0.92, 0.01)},
}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="steels,expt_gap,expt_is_metal,glass")
    ap.add_argument("--models", default="atomsets,atomsets-v0")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--patience", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="default: 16 below 1000 entries (chosen on steels by validation MAE), else 128")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loss", default="mae", choices=["mae", "mse"])
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--readout", default="mean")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--features-from", default=None, help="MEGNet that structural models tap (default: the parent)")
    ap.add_argument("--out", default=str(RESULTS / "compositional.json"))
    args = ap.parse_args(argv)

    runs = []
    out = Path(args.out)
    # Recorded without this machine's paths: the output file relative to the repository.
    settings = {**vars(args), "out": os.path.relpath(out.resolve(), RESULTS.parent.parent)}
    if out.is_file():  # resume: keep finished runs with the same settings
        previous = json.loads(out.read_text())
        if previous.get("settings") == settings:
            runs = previous["runs"]
    done = {(r["task"], r["model"], r["fold"]) for r in runs}
    for task in [f"matbench_{t}" for t in args.tasks.split(",")]:
        table = load(task)
        batch = args.batch_size or (16 if len(table) < 1000 else 128)
        for model in args.models.split(","):
            for fold in [int(f) for f in args.folds.split(",")]:
                if (task, model, fold) in done:
                    continue
                start = time.perf_counter()
                result = fit(
                    table, model, protocol="matbench", fold=fold,
                    training=TrainingConfig(epochs=args.epochs, patience=args.patience, batch_size=batch,
                                            learning_rate=args.lr, seed=fold, loss=args.loss),
                    model_config=ModelConfig(units=args.units, readout=args.readout.split("+"),
                                             activation=args.activation),
                    progress=False,
                    features_from=args.features_from,
                )
                m = result.metrics
                metric = "test_roc_auc" if m["task_type"] == "classification" else "test_mae"
                runs.append({"task": task, "model": model, "fold": fold, "metric": metric[5:], "value": m[metric],
                             "val": m[metric.replace("test", "val")], "epochs_run": m["epochs_run"],
                             "best_epoch": m["best_epoch"], "batch_size": batch,
                             "wall_time_s": round(time.perf_counter() - start, 1)})
                print(f"{task} {model} fold {fold}: {metric} {m[metric]:.4g} "
                      f"({m['epochs_run']} epochs, {runs[-1]['wall_time_s']} s)", flush=True)
                write_json_atomic(out, {"settings": settings, "versions": versions(), "runs": runs})

    summary = summarise(runs)
    write_json_atomic(out, {"settings": settings, "versions": versions(), "runs": runs, "summary": summary})
    print_table(summary)
    return 0


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        for model in dict.fromkeys(r["model"] for r in runs if r["task"] == task):
            rs = [r for r in runs if r["task"] == task and r["model"] == model]
            values = np.array([r["value"] for r in rs])
            paper = PAPER.get(task, {}).get(model)
            higher_is_better = rs[0]["metric"] == "roc_auc"
            rows.append({
                "task": task, "model": model, "metric": rs[0]["metric"], "folds": len(rs),
                "mean": float(values.mean()), "std": float(values.std()),
                "paper_mean": paper[0] if paper else None, "paper_std": paper[1] if paper else None,
                "meets_paper": None if paper is None else bool(
                    values.mean() >= paper[0] if higher_is_better else values.mean() <= paper[0]),
                "wall_time_s_per_fold": float(np.mean([r["wall_time_s"] for r in rs])),
            })
    return rows


def print_table(summary: list[dict]) -> None:
    print(f"\n{'task':<24}{'model':<13}{'metric':<8}{'ours (mean±std)':<20}{'paper':<14}{'meets':<7}s/fold")
    for r in summary:
        ours = f"{r['mean']:.4g}±{r['std']:.2g} ({r['folds']})"
        paper = f"{r['paper_mean']}±{r['paper_std']}" if r["paper_mean"] is not None else "-"
        print(f"{r['task']:<24}{r['model']:<13}{r['metric']:<8}{ours:<20}{paper:<14}{str(r['meets_paper']):<7}"
              f"{r['wall_time_s_per_fold']:.0f}")


if __name__ == "__main__":
    sys.exit(main())
