"""AtomSets-V0 with V0 from one or several element-feature sources, on the compositional Matbench tasks.

Each combination of sources (``--element-features``, see
``atomsets_tf.models.atomsets.element_sources``) is benchmarked on the official five
folds with the benchmark's defaults of the CLI (batch size, learning rate, seeds);
the per-task budget is that of ``atomsets-tf benchmark``: steels (and glass) 1000 epochs,
patience 200; expt_gap and expt_is_metal ``--budget-epochs 300 --patience 60``.

``json`` is today's default (megnet's JSON table, unscaled, ``element_features=None``);
combinations ending in ``-raw`` concatenate the sources unscaled (the package's default,
chosen by this measurement: ``STANDARDIZE_SOURCES``), the others standardise each source per column.

Resumable: each (task, combination) trains in ``RUNS/<task>/<combination>`` through
``run_benchmark`` (finished folds are read back, an interrupted one resumes), and its
summary goes to ``benchmarks/results/v0_sources/<task>/<combination>.json``; the table of
every finished summary is printed and written to ``results.json`` / ``README-table.md``.

    nice -n 10 python benchmarks/v0_sources.py --tasks matbench_steels matbench_expt_gap
    python benchmarks/v0_sources.py --table-only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atomsets_tf.evaluation.common import default_training
from atomsets_tf.evaluation.protocol import run_benchmark
from atomsets_tf.evaluation.runners import load_task
from atomsets_tf.models.atomsets import element_sources
from atomsets_tf.utils.io import write_json_atomic

FORMATION = "megnet-mp-2019.4.1-formation_energy"
FOUR_MEGNET = [FORMATION, "megnet-mp-2018.6.1-band_gap_regression", "megnet-mp-2019.4.1-log10K",
               "megnet-mp-2019.4.1-log10G"]
#: name -> (element_features, standardise). In the order they run (the decisive ones first).
COMBINATIONS: dict[str, tuple[list[str] | None, bool]] = {
    "json": (None, False),
    "megnet4+matscholar": ([*FOUR_MEGNET, "matscholar"], True),
    "megnet4+matscholar-raw": ([*FOUR_MEGNET, "matscholar"], False),
    "formation": ([FORMATION], True),
    "megnet4": (FOUR_MEGNET, True),
    "matscholar": (["matscholar"], True),
    "json-std": (["megnet"], True),
    "megnet5+matscholar": ([*FOUR_MEGNET, "megnet-mp-2019.4.1-efermi", "matscholar"], True),
    "formation-raw": ([FORMATION], False),
    "megnet4-raw": (FOUR_MEGNET, False),
    "matscholar-raw": (["matscholar"], False),
    "megnet5+matscholar-raw": ([*FOUR_MEGNET, "megnet-mp-2019.4.1-efermi", "matscholar"], False),
}
#: task -> (budget_epochs, patience): the issue's budgets.
BUDGETS = {
    "matbench_steels": (None, None),
    "matbench_glass": (None, None),
    "matbench_expt_gap": (300, 60),
    "matbench_expt_is_metal": (300, 60),
}
RESULTS = Path(__file__).resolve().parent / "results" / "v0_sources"
RUNS = Path(__file__).resolve().parents[1] / "runs" / "acc" / "v0multi"


def run_combination(task: str, name: str, runs: Path, results: Path) -> dict:
    """Benchmark one combination on one task (resuming what its folder holds); its summary."""
    features, standardize = COMBINATIONS[name]
    budget, patience = BUDGETS[task]
    table = load_task(task, "atomsets-v0")
    training = default_training(len(table), budget, patience=patience)
    element_sources.STANDARDIZE_SOURCES = standardize
    try:
        summary = run_benchmark(table, "atomsets-v0", runs / task / name, budget_epochs=budget, training=training,
                                element_features=features, report=print,
                                command=f"python benchmarks/v0_sources.py --tasks {task} --combinations {name}")
    finally:
        element_sources.STANDARDIZE_SOURCES = False
    summary["combination"] = {"name": name, "element_features": features, "standardized": standardize}
    write_json_atomic(results / task / f"{name}.json", summary)
    return summary


def table_rows(results: Path) -> list[dict]:
    """One row per finished summary: mean validation and test metric over the folds."""
    rows = []
    for task in BUDGETS:
        for name in COMBINATIONS:
            path = results / task / f"{name}.json"
            if not path.is_file():
                continue
            summary = json.loads(path.read_text())
            vals = [f["val"] for f in summary["folds"]]
            rows.append({"task": task, "combination": name, "metric": summary["metric"],
                         "val": sum(vals) / len(vals), "test": summary["mean"], "test_std": summary["std"],
                         "n_folds": summary["n_folds"], "width": width_of(name),
                         "wall_time_s": summary["wall_time_s"]})
    return rows


def width_of(name: str) -> int:
    """The V0 width of a combination (16 for today's JSON table)."""
    features, _ = COMBINATIONS[name]
    return 16 if features is None else element_sources.element_features_table(features).dim


def print_table(rows: list[dict], results: Path) -> None:
    """Print the table, and write it to ``results.json`` and ``README-table.md``."""
    lines = ["| task | V0 sources | width | folds | val (mean) | test (mean ± std) | wall s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['combination']} | {r['width']} | {r['n_folds']} | {r['val']:.4g} | "
                     f"{r['test']:.4g} ± {r['test_std']:.2g} | {r['wall_time_s']:.0f} |")
    print("\n".join(lines))
    write_json_atomic(results / "results.json", {"rows": rows, "combinations": {
        k: {"element_features": v[0], "standardized": v[1]} for k, v in COMBINATIONS.items()}})
    (results / "README-table.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["matbench_steels", "matbench_expt_gap"], choices=list(BUDGETS))
    parser.add_argument("--combinations", nargs="+", default=list(COMBINATIONS)[:7], choices=list(COMBINATIONS))
    parser.add_argument("--runs", type=Path, default=RUNS, help="Where the run folders go (resumed).")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table-only", action="store_true", help="Only print the table of finished summaries.")
    args = parser.parse_args(argv)
    if not args.table_only:
        for task in args.tasks:
            for name in args.combinations:
                summary = run_combination(task, name, args.runs, args.results)
                print(f"{task} {name}: test {summary['metric']} {summary['mean']:.4g}", flush=True)
    print_table(table_rows(args.results), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
