"""Issue 14's accuracy runs: each a resumable ``atomsets-tf benchmark`` on the official Matbench folds.

    python benchmarks/accuracy.py --list                 # the runs
    python benchmarks/accuracy.py RUN [RUN ...]          # run them (a killed run resumes; finished folds are read back)
    python benchmarks/accuracy.py --table                # print what is recorded; write benchmarks/results/accuracy.json
    python benchmarks/accuracy.py --markdown             # ... and rewrite BENCHMARKS.md's accuracy table

Every run writes ``runs/acc/<name>/summary.json``; the table reads those. Choices between variants are made on
the **validation** column (10 % of each fold's training part), never on the test column.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "acc"
RESULT = ROOT / "benchmarks" / "results" / "accuracy.json"

#: name -> the arguments of ``atomsets-tf benchmark`` (``-o runs/acc/<name>`` is added).
PLAN: dict[str, list[str]] = {
    # expt_gap: the three outputs, one model each (selected on validation), then the ensemble
    "expt_gap/v0-linear": ["matbench_expt_gap", "--model", "atomsets-v0", "--output-kind", "linear",
                           "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-nonneg": ["matbench_expt_gap", "--model", "atomsets-v0", "--output-kind", "non-negative",
                           "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-zi": ["matbench_expt_gap", "--model", "atomsets-v0", "--output-kind", "zero-inflated",
                       "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-zi-ens5": ["matbench_expt_gap", "--model", "atomsets-v0", "--output-kind", "zero-inflated",
                            "--ensemble", "5", "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-nonneg-ens5": ["matbench_expt_gap", "--model", "atomsets-v0", "--output-kind", "non-negative",
                                "--ensemble", "5", "--budget-epochs", "400", "--patience", "100"],
    # expt_gap from an mp_gap parent (DFT gaps of 106k compounds; fold 0 of mp_gap/v0-zi-b512), retrained
    "expt_gap/v0-zi-full-from-mp_gap": ["matbench_expt_gap", "--model", "atomsets-full", "--features-from",
                                        "runs/acc/mp_gap/v0-zi-b512/fold_0/model.keras", "--budget-epochs", "400",
                                        "--patience", "100"],
    "expt_gap/v0-zi-head-from-mp_gap": ["matbench_expt_gap", "--model", "atomsets-head", "--features-from",
                                        "runs/acc/mp_gap/v0-zi-b512/fold_0/model.keras", "--budget-epochs", "400",
                                        "--patience", "100"],
    "expt_gap/v0-zi-full-from-mp_gap-ens5": ["matbench_expt_gap", "--model", "atomsets-full", "--features-from",
                                             "runs/acc/mp_gap/v0-zi-b512/fold_0/model.keras", "--ensemble", "5",
                                             "--bootstrap", "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-zi-head-from-mp_gap-ens5": ["matbench_expt_gap", "--model", "atomsets-head", "--features-from",
                                             "runs/acc/mp_gap/v0-zi-b512/fold_0/model.keras", "--ensemble", "5",
                                             "--bootstrap", "--budget-epochs", "400", "--patience", "100"],
    "expt_gap/v0-nonneg-head-from-mp_gap": ["matbench_expt_gap", "--model", "atomsets-head", "--features-from",
                                            "runs/acc/mp_gap/v0-nonneg-b512/fold_0/model.keras", "--budget-epochs",
                                            "400", "--patience", "100"],
    "expt_gap/v0-nonneg-full-from-mp_gap": ["matbench_expt_gap", "--model", "atomsets-full", "--features-from",
                                            "runs/acc/mp_gap/v0-nonneg-b512/fold_0/model.keras", "--budget-epochs",
                                            "400", "--patience", "100"],
    "steels/v0-nonneg-ens5": ["matbench_steels", "--model", "atomsets-v0", "--ensemble", "5"],
    "steels/v0-nonneg": ["matbench_steels", "--model", "atomsets-v0"],
    "steels/v0-linear-ens5": ["matbench_steels", "--model", "atomsets-v0", "--output-kind", "linear",
                              "--ensemble", "5"],
    "phonons/v0-nonneg-ens5": ["matbench_phonons", "--model", "atomsets-v0", "--ensemble", "5"],
    "jdft2d/v1-nonneg-ens5": ["matbench_jdft2d", "--model", "atomsets-v1", "--ensemble", "5"],
    "glass/v0-ens5": ["matbench_glass", "--model", "atomsets-v0", "--ensemble", "5", "--budget-epochs", "400",
                      "--patience", "100"],
    "expt_is_metal/v0-ens5": ["matbench_expt_is_metal", "--model", "atomsets-v0", "--ensemble", "5",
                              "--budget-epochs", "400", "--patience", "100"],
    "mp_e_form/v0-b512": ["matbench_mp_e_form", "--model", "atomsets-v0", "--batch-size", "512",
                          "--budget-epochs", "300", "--patience", "30"],
    "mp_gap/v0-zi-b512": ["matbench_mp_gap", "--model", "atomsets-v0", "--output-kind", "zero-inflated",
                          "--batch-size", "512", "--budget-epochs", "300", "--patience", "30"],
    "mp_gap/v0-nonneg-b512": ["matbench_mp_gap", "--model", "atomsets-v0", "--output-kind", "non-negative",
                              "--batch-size", "512", "--budget-epochs", "300", "--patience", "30"],
    "mp_is_metal/v0-b512": ["matbench_mp_is_metal", "--model", "atomsets-v0", "--batch-size", "512",
                            "--budget-epochs", "300", "--patience", "30"],
    "mp_e_form/atomsets-b512": ["matbench_mp_e_form", "--model", "atomsets", "--batch-size", "512",
                                "--budget-epochs", "300", "--patience", "30"],
    "mp_gap/atomsets-zi-b512": ["matbench_mp_gap", "--model", "atomsets", "--output-kind", "zero-inflated",
                                "--batch-size", "512", "--budget-epochs", "300", "--patience", "30"],
    "mp_is_metal/atomsets-b512": ["matbench_mp_is_metal", "--model", "atomsets", "--batch-size", "512",
                                  "--budget-epochs", "300", "--patience", "30"],
}


def run(name: str) -> int:
    command = ["atomsets-tf", "benchmark", *PLAN[name], "-o", f"runs/acc/{name}"]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT)  # from the repository root: relative paths, as the table prints them


def _partial_summary(folder: Path) -> dict | None:
    """A summary of the folds a benchmark has finished so far (it writes ``summary.json`` only at the end)."""
    from atomsets_tf.evaluation.reference import to_paper_units

    folds = []
    for path in sorted(folder.glob("fold_*/metrics.json")):
        m = json.loads(path.read_text())
        metric = "roc_auc" if m["task_type"] == "classification" else "mae"
        folds.append({"fold": m["fold"], "val": m[f"val_{metric}"], "test": m[f"test_{metric}"], "metric": metric,
                      "wall_time_s": m["wall_time_s"], "epochs_run": m["epochs_run"], "task": m["data"]})
    if not folds:
        return None
    tests = [f["test"] for f in folds]
    mean, std = sum(tests) / len(tests), (sum((t - sum(tests) / len(tests)) ** 2 for t in tests) / len(tests)) ** 0.5
    task = folds[0]["task"]
    return {"task": task, "model": "", "metric": folds[0]["metric"], "n_folds": len(folds), "folds": folds,
            "mean": mean, "std": std, "wall_time_s": sum(f["wall_time_s"] for f in folds),
            "paper_units": {"mean": to_paper_units(task, mean), "std": to_paper_units(task, std)}}


def row(name: str) -> dict | None:
    path = RUNS / name / "summary.json"
    s = json.loads(path.read_text()) if path.is_file() else _partial_summary(RUNS / name)
    if s is None:
        return None
    out = {"name": name, "task": s["task"], "model": s["model"], "metric": s["metric"], "n_folds": s["n_folds"],
           "test_mean": s["mean"], "test_std": s["std"],
           "val_mean": sum(f["val"] for f in s["folds"]) / len(s["folds"]),
           "paper_units": s.get("paper_units"), "wall_time_s_per_fold": s["wall_time_s"] / s["n_folds"],
           "epochs_run": [f["epochs_run"] for f in s["folds"]], "command": "atomsets-tf benchmark " + " ".join(
               [*PLAN.get(name, []), "-o", f"runs/acc/{name}"])}
    for key in ("uncertainty", "uncertainty_raw"):
        if key in s:
            out[key] = s[key]
    return out


def table() -> list[dict]:
    rows = [r for r in (row(n) for n in PLAN) if r is not None]
    print(f"{'run':<28} {'metric':<8} {'val':>9} {'test (mean ± std)':>22} {'paper units':>18} {'s/fold':>7}  "
          "spearman cov1 cov2 miscal")
    for r in rows:
        pu = r["paper_units"]
        unc = r.get("uncertainty")
        u = (f"{unc['spearman_abs_error_std']:.2f} {unc['coverage_1sigma']:.2f} {unc['coverage_2sigma']:.2f} "
             f"{unc['miscalibration_area']:.3f}") if unc else ""
        paper = f"{pu['mean']:.4g} ± {pu['std']:.2g}" if pu else ""
        print(f"{r['name']:<28} {r['metric']:<8} {r['val_mean']:>9.4g} {r['test_mean']:>12.4g} ± {r['test_std']:<7.2g} "
              f"{paper:>18} {r['wall_time_s_per_fold']:>7.0f}  {u}")
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


def markdown(rows: list[dict], commands: bool = True) -> str:
    """The accuracy table of BENCHMARKS.md (paper units; the paper's Table 2 value and Matbench's best beside)."""
    from atomsets_tf.evaluation.reference import MATBENCH_LEADERBOARD, reference_row, to_paper_units

    lines = ["| run | val | test (mean ± std, paper units) | paper (AtomSets-V0) | leaderboard best | s / fold | "
             "Spearman, ±1σ, ±2σ, miscal. area |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pu = {"mean": to_paper_units(r["task"], r["test_mean"]), "std": to_paper_units(r["task"], r["test_std"])}
        ref = reference_row(r["task"], "atomsets-v0") or {}  # the paper's AtomSets-V0, the target
        paper = f"{ref['paper_mean']:g} ± {ref['paper_std']:g}" if ref.get("paper_mean") is not None else ""
        best = MATBENCH_LEADERBOARD.get(r["task"], {}).get("best")
        best = f"{to_paper_units(r['task'], best['mean']):.4g} ({best['algorithm']})" if best else ""
        unc = r.get("uncertainty")
        u = (f"{unc['spearman_abs_error_std']:.2f}, {unc['coverage_1sigma']:.2f}, {unc['coverage_2sigma']:.2f}, "
             f"{unc['miscalibration_area']:.3f}") if unc else ""
        folds = f" ({r['n_folds']} of 5 folds so far)" if r["n_folds"] < 5 else ""
        lines.append(f"| `{r['name']}`{folds} | {to_paper_units(r['task'], r['val_mean']):.4g} | "
                     f"**{pu['mean']:.4g}** ± {pu['std']:.2g} | {paper} | {best} | {r['wall_time_s_per_fold']:.0f} | "
                     f"{u} |")
    if commands:
        lines.append("")
        lines += [f"- `{r['name']}`: `{r['command']}`" for r in rows]
    return "\n".join(lines)


def write_markdown(rows: list[dict]) -> None:
    """BENCHMARKS.md's table with every command; README.md's without (it points to BENCHMARKS.md for them)."""
    for name, commands in (("BENCHMARKS.md", True), ("README.md", False)):
        path = ROOT / name
        text = path.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        path.write_text(text[:start] + "\n" + markdown(rows, commands) + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(PLAN))
        return 0
    unknown = [n for n in args.runs if n not in PLAN]
    if unknown:
        print(f"unknown runs: {unknown}", file=sys.stderr)
        return 2
    failed = [n for n in args.runs if run(n) != 0]
    rows = table()
    if args.markdown:
        write_markdown(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
