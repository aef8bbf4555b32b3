"""Collect benchmark outputs into ``benchmarks/results/`` and render the tables of ``BENCHMARKS.md``.

    python benchmarks/report.py --collect runs     # copy summaries, curves and plots from run folders
    python benchmarks/report.py                    # rewrite the tables between the markers of BENCHMARKS.md

Results layout: ``results/matbench/<task>/<model>.json`` (an ``atomsets-tf
benchmark`` summary.json), ``results/<experiment>/`` (learning curves,
extrapolation: their JSON and PNG). The prose of BENCHMARKS.md outside the
``<!-- tables:begin -->`` / ``<!-- tables:end -->`` markers is left alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from atomsets_tf.evaluation.reference import MATBENCH_LEADERBOARD, TASKS, reference_row, to_paper_units
from atomsets_tf.models.registry import FIT_MODELS
from atomsets_tf.workflows.fit import ModelConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS_MD = HERE.parent / "BENCHMARKS.md"
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
#: Compositional rows, in the paper's order (by data size; classification last).
COMPOSITIONAL_TASKS = ["steels", "jdft2d", "phonons", "expt_gap", "dielectric", "log_kvrh", "log_gvrh",
                       "perovskites", "mp_gap", "mp_e_form", "expt_is_metal", "glass", "mp_is_metal"]
EXPERIMENTS = ("learning_curve", "extrapolation")
#: The ModelConfig fields a grid searches (Table S2).
_HEAD_FIELDS = ("n_layers_before_readout", "n_layers_after_readout", "units", "readout", "activation")


def portable(command: str | None) -> str | None:
    """A command without this machine's paths: an output folder ``/any/where/runs/x`` becomes ``runs/x``."""
    if command is None:
        return None
    return re.sub(r"(?<!\S)/\S*/runs/(\S+)", r"runs/\1", command)


def _copy_record(src: Path, dest: Path) -> None:
    record = json.loads(src.read_text())
    for key in ("command", "features_from"):  # the run's output and input folders, without this machine's path
        if isinstance(record.get(key), str):
            record[key] = portable(record[key])
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{src} -> {dest.relative_to(HERE.parent)}")


def collect(runs: Path) -> None:
    """Copy every benchmark summary and experiment record found under ``runs`` into ``results/``."""
    for summary in sorted(runs.rglob("summary.json")):
        record = json.loads(summary.read_text())
        if "task" not in record or "model" not in record or "folds" not in record:
            continue
        task = Path(str(record["task"])).name.split(".")[0]
        # A head other than the default (a grid's winner) is filed apart: "tuned".
        default_head = {k: v for k, v in asdict(ModelConfig()).items() if k in _HEAD_FIELDS}
        head = {k: v for k, v in (record.get("model_config") or {}).items() if k in _HEAD_FIELDS}
        kind = "tuned" if record["model"] in FIT_MODELS and head and head != default_head else record["protocol"]
        _copy_record(summary, RESULTS / kind / task / f"{record['model']}.json")
    for grid in sorted(runs.rglob("grid.json")):
        record = json.loads(grid.read_text())
        _copy_record(grid, RESULTS / "grid" / record["task"] / f"{record['model']}.json")
    for kind in EXPERIMENTS:
        for record in sorted(runs.rglob(f"{kind}.json")):
            dest = RESULTS / record.parent.name
            _copy_record(record, dest / record.name)
            if record.with_suffix(".png").is_file():
                shutil.copyfile(record.with_suffix(".png"), dest / record.with_suffix(".png").name)


#: The folders of benchmark summaries: official folds, the paper's protocol, a grid's tuned configuration.
RESULT_KINDS = ("matbench", "paper", "tuned")


def load_results() -> dict[str, dict[tuple[str, str], dict]]:
    """Every benchmark summary, by kind (:data:`RESULT_KINDS`) and (task, model)."""
    return {kind: load_summaries(kind) for kind in RESULT_KINDS}


def load_summaries(protocol: str = "matbench") -> dict[tuple[str, str], dict]:
    out = {}
    for f in sorted((RESULTS / protocol).glob("*/*.json")):
        record = json.loads(f.read_text())
        out[(f.parent.name, record["model"])] = record
    return out


def _cell(record: dict | None, task: str) -> str:
    if record is None:
        return "–"
    mean, std = to_paper_units(task, record["mean"]), to_paper_units(task, record["std"])
    digits = 3 if abs(mean) < 10 else 1
    flag = "" if record["n_folds"] == 5 else f" ({record['n_folds']} folds)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{flag}"


def _paper(task: str, model: str) -> str:
    row = reference_row(task, model)
    if row is None or row.get("paper_table") != "table2":
        return "–"
    return _paper_value(row["paper_mean"], row["paper_std"])


def _paper_value(mean: float, std: float | None) -> str:
    """The paper's figure as printed: the std with the mean's number of decimals (0.09 ± 0.00)."""
    text = f"{mean}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return text if std is None else f"{text} ± {std:.{decimals}f}"


def _meets(record: dict | None, task: str, model: str) -> str:
    row = reference_row(task, model)
    if record is None or row is None or row.get("paper_table") != "table2":
        return ""
    return _verdict(to_paper_units(task, record["mean"]), row["paper_mean"], TASKS[task]["metric"] == "roc_auc")


def _verdict(ours: float, paper: float, higher_is_better: bool) -> str:
    """Ours against the paper's mean, ours rounded to the paper's decimals plus one: "yes" or "no (+gap)"."""
    text = f"{paper}"
    ours = round(ours, (len(text.split(".")[1]) if "." in text else 0) + 1)
    if (ours >= paper) if higher_is_better else (ours <= paper):
        return "yes"
    return f"no ({ours - paper:+.3g})"


def _budget(*records) -> str:
    budgets = sorted({(r["training"]["epochs"], r["training"]["patience"]) for r in records if r})
    return "; ".join(f"{e}/{p}" for e, p in budgets) or "–"


def compositional_table(summaries) -> list[str]:
    lines = [
        "| task (paper's unit) | n | AtomSets | paper | AtomSets-V0 | paper | V0 meets paper | dummy | "
        "leaderboard best | epochs / patience |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for short in COMPOSITIONAL_TASKS:
        task = f"matbench_{short}"
        info = TASKS[task]
        a, v0, dummy = (summaries.get((task, m)) for m in ("atomsets", "atomsets-v0", "dummy"))
        best = MATBENCH_LEADERBOARD.get(task, {}).get("best")
        lb = "–" if not best else f"{to_paper_units(task, best['mean']):.3g} ({best['algorithm']})"
        unit = "ROC-AUC" if info["metric"] == "roc_auc" else info["paper_unit"]
        lines.append(f"| {short} ({unit}) | {info['n_samples']} | {_cell(a, task)} | {_paper(task, 'atomsets')} | "
                     f"{_cell(v0, task)} | {_paper(task, 'atomsets-v0')} | {_meets(v0, task, 'atomsets-v0')} | "
                     f"{_cell(dummy, task)} | {lb} | {_budget(a, v0)} |")
    return lines


def structural_table(summaries, task: str) -> list[str]:
    lines = ["| model | ours | paper (Table 2 / S4) | meets paper | epochs / patience |", "|---|---|---|---|---|"]
    for (t, model), record in sorted(summaries.items()):
        if t != task or model in ("atomsets", "atomsets-v0", "dummy"):  # compositional: the table above
            continue
        row = reference_row(task, model)
        paper = "–" if row is None else _paper_value(row["paper_mean"], row["paper_std"])
        meets = ""
        if row is not None:
            meets = _verdict(to_paper_units(task, record["mean"]), row["paper_mean"], False)
        lines.append(f"| {model} | {_cell(record, task)} | {paper} | {meets} | {_budget(record)} |")
    return lines


def paper_protocol_table(official, paper_runs) -> list[str]:
    """Runs under ``--protocol paper`` beside the same model on the official folds and the paper."""
    lines = ["| task | model | paper protocol (ours) | official folds (ours) | paper | meets paper |",
             "|---|---|---|---|---|---|"]
    for (task, model), record in sorted(paper_runs.items()):
        if task not in TASKS:  # e.g. the perovskite subset: no paper figure to compare with
            continue
        row = reference_row(task, model)
        meets = "" if row is None else _verdict(to_paper_units(task, record["mean"]), row["paper_mean"],
                                                  TASKS[task]["metric"] == "roc_auc")
        paper = "–" if row is None else _paper_value(row["paper_mean"], row["paper_std"])
        lines.append(f"| {task} | {model} | {_cell(record, task)} | {_cell(official.get((task, model)), task)} | "
                     f"{paper} | {meets} |")
    return lines


def grid_table(official, tuned) -> list[str]:
    """Each grid search: its best configuration, and that configuration on the official folds (if run)."""
    lines = ["| task | model | configurations | best (val, CV on fold 0's training part) | tuned, official folds | "
             "default, official folds |", "|---|---|---|---|---|---|"]
    for f in sorted((RESULTS / "grid").glob("*/*.json")):
        g = json.loads(f.read_text())
        task, model = g["task"], g["model"]
        best = ", ".join(f"{k}={v}" for k, v in g["best"]["config"].items() if k in _HEAD_FIELDS)
        lines.append(f"| {task} | {model} | {g['n_configs']} of {g['n_grid']}, {g['cv_folds']}-fold CV | {best}: "
                     f"{g['best']['mean']:.4g} ± {g['best']['std']:.2g} | {_cell(tuned.get((task, model)), task)} | "
                     f"{_cell(official.get((task, model)), task)} |")
    return lines


def commands(results: dict[str, dict]) -> list[str]:
    lines = []
    for (task, model), record in [item for kind in RESULT_KINDS for item in sorted(results[kind].items())]:
        lines.append(f"- {task} / {model} ({record['protocol']}): `{record['command']}`")
    return lines


def curve_tables() -> list[str]:
    """Each learning-curve and extrapolation record: its plot, its command and its printed table."""
    from atomsets_tf.evaluation.extrapolation import format_extrapolation
    from atomsets_tf.evaluation.learning_curve import format_learning_curve

    lines = []
    for kind, formatter in (("learning_curve", format_learning_curve), ("extrapolation", format_extrapolation)):
        for f in sorted(RESULTS.glob(f"*/{kind}.json")):
            record = json.loads(f.read_text())
            name, folder = f.parent.name, f.parent.relative_to(HERE.parent).as_posix()
            lines += ["", f"#### {name}", "", f"![{name}]({folder}/{kind}.png)", "",
                      f"Command: `{record.get('command')}`", "", "```", *formatter(record).splitlines(), "```"]
    return lines


def render(results: dict[str, dict]) -> str:
    summaries = results["matbench"]
    body = ["### Compositional models, official Matbench v0.1 folds (mean ± std over 5 folds)", "",
            *compositional_table(summaries), "",
            "### Structural models on matbench_jdft2d (meV/atom), official folds", "",
            *structural_table(summaries, "matbench_jdft2d"), "",
            "### The paper's protocol (five random 80/10/10 splits, patience 200) where the official folds miss", "",
            *paper_protocol_table(summaries, results["paper"]), "",
            "### Table S2 grid searches (`atomsets-tf grid`)", "", *grid_table(summaries, results["tuned"]), "",
            "### Learning curves, transfer and extrapolation", *curve_tables(), "",
            "### Commands that produced each row", "", *commands(results)]
    return "\n".join(body)


README_MD = HERE.parent / "README.md"
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def readme_table(summaries) -> list[str]:
    """The README's short table: AtomSets-V0 on every compositional task, AtomSets-V1 on jdft2d."""
    lines = ["| task (paper's unit) | AtomSets-V0 (ours) | paper | AtomSets (ours) | paper |", "|---|---|---|---|---|"]
    for short in COMPOSITIONAL_TASKS:
        task = f"matbench_{short}"
        unit = "ROC-AUC" if TASKS[task]["metric"] == "roc_auc" else TASKS[task]["paper_unit"]
        v0, a = summaries.get((task, "atomsets-v0")), summaries.get((task, "atomsets"))
        lines.append(f"| {short} ({unit}) | {_cell(v0, task)} | {_paper(task, 'atomsets-v0')} | "
                     f"{_cell(a, task)} | {_paper(task, 'atomsets')} |")
    v1 = summaries.get(("matbench_jdft2d", "atomsets-v1"))
    lines.append(f"| jdft2d, **AtomSets-V1** (meV/atom) | {_cell(v1, 'matbench_jdft2d')} | "
                 f"{_paper('matbench_jdft2d', 'atomsets-v1')} | | |")
    return lines


def pretrained_table() -> list[str]:
    """The README's table of the bundled checkpoints, from ``pretrained/presets.json``."""
    registry = json.loads((HERE.parent / "pretrained" / "presets.json").read_text())["presets"]
    lines = ["| name | what it predicts | test metric (mean ± std over folds) | size |", "|---|---|---|---|"]
    for e in registry:
        size = (HERE.parent / "pretrained" / e["file"]).stat().st_size / 1024
        spread = f" ± {e['test_std']:.3g}" if e["n_folds"] > 1 else " (one split)"
        lines.append(f"| [`{e['name']}`](pretrained/{e['name']}/README.md) | {e['description']} | "
                     f"{e['metric']} {e['test_mean']:.3g}{spread} | {size:.0f} kB |")
    return lines


def _replace_between(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path} lacks the {begin} / {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body}\n{end}{tail}")
    print(f"Wrote the tables of {path}")


def write_markdown() -> None:
    results = load_results()
    _replace_between(BENCHMARKS_MD, BEGIN, END, render(results))
    _replace_between(README_MD, README_BEGIN, README_END, "\n".join(readme_table(results["matbench"])))
    _replace_between(README_MD, "<!-- pretrained:begin -->", "<!-- pretrained:end -->", "\n".join(pretrained_table()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect", type=Path, default=None, help="a folder of runs to copy results from")
    args = ap.parse_args(argv)
    if args.collect is not None:
        collect(args.collect)
    write_markdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
