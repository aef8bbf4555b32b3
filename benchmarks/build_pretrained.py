"""Train the checkpoints of ``pretrained/`` with the package's own commands and write their model cards.

For each preset below: ``atomsets-tf benchmark`` (resumable, in ``runs/pretrained/<name>``),
then fold 0's model is copied to ``pretrained/<name>/model.keras`` beside its
``metrics.json`` (the benchmark summary) and ``README.md`` (the model card),
and ``pretrained/presets.json`` gets its sha256.

    python benchmarks/build_pretrained.py                      # all
    python benchmarks/build_pretrained.py atomsets-v0-glass    # one
    python benchmarks/build_pretrained.py --cards-only         # rewrite the model cards from the saved metrics
    python benchmarks/build_pretrained.py --well-known-only    # rewrite only their well-known-materials sections
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "pretrained"
RUNS = ROOT / "runs" / "pretrained"
PEROVSKITES = "../shared/data/structures/matbench_perovskites_val_subset.json.gz"

MP_GAP_PARENT = "runs/acc/mp_gap/v0-zi-b512/fold_0/model.keras"
CALIBRATION = ROOT / "benchmarks" / "results" / "calibration.json"

PRESETS = [
    {"name": "atomsets-v0-steels", "kind": "atomsets", "task": "matbench_steels", "model": "atomsets-v0",
     "args": ["--output-kind", "linear", "--element-features", "megnet-mp-2019.4.1-formation_energy"],
     "runs": "runs/acc/v0multi/matbench_steels/formation-raw", "unit": "MPa",
     "description": "AtomSets-V0 on the V0 embedding of megnet-mp-2019.4.1-formation_energy, steel yield strength "
                    "(MPa) from composition (matbench_steels)",
     "uncertainty_from": "runs/acc/steels/v0-nonneg-ens5"},
    {"name": "atomsets-v0-mp_gap", "kind": "atomsets", "task": "matbench_mp_gap", "model": "atomsets-v0",
     "args": ["--output-kind", "zero-inflated", "--batch-size", "512", "--budget-epochs", "300", "--patience", "30"],
     "runs": "runs/acc/mp_gap/v0-zi-b512", "unit": "eV",
     "description": "AtomSets-V0 with a two-part output, PBE band gap (eV) from composition (matbench_mp_gap); "
                    "the parent of atomsets-v0-expt_gap"},
    {"name": "atomsets-v0-expt_gap", "kind": "atomsets", "task": "matbench_expt_gap", "model": "atomsets-head",
     "args": ["--features-from", MP_GAP_PARENT, "--budget-epochs", "400", "--patience", "100"],
     "runs": "runs/acc/expt_gap/v0-zi-head-from-mp_gap", "unit": "eV",
     "parent": "atomsets-v0-mp_gap", "output": "zero-inflated",
     "description": "AtomSets-V0, experimental band gap (eV) from composition (matbench_expt_gap): the "
                    "atomsets-v0-mp_gap model (PBE gaps of 106k compounds) with its head retrained",
     "uncertainty_from": "runs/acc/expt_gap/v0-zi-head-from-mp_gap-ens5"},
    {"name": "atomsets-v0-glass", "kind": "ensemble", "task": "matbench_glass", "model": "atomsets-v0",
     "args": ["--ensemble", "5", "--budget-epochs", "400", "--patience", "100"], "runs": "runs/acc/glass/v0-ens5",
     "description": "AtomSets-V0, an ensemble of 5, glass-forming ability (probability) from composition "
                    "(matbench_glass)"},
    {"name": "atomsets-v1-jdft2d", "kind": "ensemble", "task": "matbench_jdft2d", "model": "atomsets-v1",
     "args": ["--ensemble", "5"], "runs": "runs/acc/jdft2d/v1-nonneg-ens5", "unit": "meV/atom",
     "description": "AtomSets-V1 on MEGNet V1 features, an ensemble of 5, exfoliation energy (meV/atom) from "
                    "structure (matbench_jdft2d); taps the megnet-mp-2019.4.1-formation_energy preset"},
    {"name": "cgat-perovskites", "kind": "cgat", "task": PEROVSKITES, "model": "cgat",
     "args": ["--protocol", "paper", "--folds", "0", "--budget-epochs", "30", "--patience", "10",
              "--batch-size", "32"], "unit": "eV per cell",
     "description": "CGAT (CPU-sized), formation energy (eV per 5-atom cell, RPBE) of cubic perovskites "
                    "(3447-structure subset of matbench_perovskites)"},
]


def build(spec: dict) -> dict:
    """Train (or resume) one preset's benchmark; copy its fold-0 model; write its card; return its registry entry.

    ``spec["runs"]`` (relative to the repository root) reuses a benchmark folder that already holds the runs (e.g.
    ``benchmarks/accuracy.py``'s): finished folds with the same settings are read back, not retrained.
    """
    out = ROOT / spec["runs"] if "runs" in spec else RUNS / spec["name"]
    # Run from the repository root with a relative output folder: the summary records the command as typed there.
    command = ["atomsets-tf", "benchmark", spec["task"], "--model", spec["model"], *spec["args"],
               "-o", out.relative_to(ROOT).as_posix()]
    subprocess.run(command, check=True, cwd=ROOT)
    summary = json.loads((out / "summary.json").read_text())
    fold0 = json.loads((out / "fold_0" / "metrics.json").read_text())
    dest = PRETRAINED / spec["name"]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "fold_0" / "model.keras", dest / "model.keras")
    rescale(spec, dest / "model.keras")
    (dest / "metrics.json").write_text(json.dumps({"benchmark": summary, "fold_0": fold0}, indent=1) + "\n")
    write_card(spec, dest, summary, fold0)
    from atomsets_tf.presets import sha256_file

    return {"name": spec["name"], "kind": spec["kind"], "file": f"{spec['name']}/model.keras",
            "sha256": sha256_file(dest / "model.keras"), "description": spec["description"],
            "task": summary["task"], "model": spec["model"], "metric": summary["metric"],
            "test_mean": summary["mean"], "test_std": summary["std"], "n_folds": summary["n_folds"]}


def spec_command(spec: dict) -> str:
    """The command that trains ``spec``'s benchmark, as :func:`build` runs it from the repository root."""
    out = spec.get("runs", f"runs/pretrained/{spec['name']}")
    return " ".join(["atomsets-tf", "benchmark", spec["task"], "--model", spec["model"], *spec["args"], "-o", out])


def rescale(spec: dict, path: Path) -> None:
    """An ensemble preset gets the std factor with the smallest miscalibration area on fold 0's validation part
    (``benchmarks/recalibrate.py``), where its run's was the Gaussian likelihood factor."""
    calibration = json.loads(CALIBRATION.read_text()).get(spec.get("runs")) if CALIBRATION.is_file() else None
    if spec["kind"] != "ensemble" or calibration is None:
        return
    from atomsets_tf.models.loading import load_model

    ensemble = load_model(path)
    ensemble.std_scale = calibration["folds"][0]["miscalibration"]["std_scale"]
    ensemble.save(path)


def write_card(spec: dict, dest: Path, summary: dict, fold0: dict) -> None:
    """The model card: the run's description, the well-known materials, the uncertainty figures."""
    card = model_card(spec, summary, fold0, spec_command(spec))
    card += literature_section(spec, dest / "model.keras") + uncertainty_section(summary, spec)
    if spec.get("parent"):
        card += (f"\n## Parent\n\nRetrained from the `{spec['parent']}` preset (the file `{MP_GAP_PARENT}` of the "
                 "benchmark above is that preset's model); the retrain command reads it from there.\n")
    (dest / "README.md").write_text(card)


def rewrite_well_known(spec: dict, dest: Path) -> None:
    """Replace the well-known-materials section of ``dest``'s card (from its heading to the next one)."""
    card = (dest / "README.md").read_text()
    if "\n## Well-known materials" not in card:
        return  # a task without well-known materials (pretrained/literature.json)
    start = card.index("\n## Well-known materials")
    end = card.find("\n## ", start + 1)
    section = literature_section(spec, dest / "model.keras").rstrip("\n") + "\n"
    (dest / "README.md").write_text(card[:start] + section + (card[end:] if end != -1 else ""))


def literature_rows(task: str, model_path: Path) -> list[dict]:
    """The well-known materials of ``pretrained/literature.json`` for ``task``, each with the model's prediction
    (and std, for an ensemble)."""
    from atomsets_tf.data.io import Table
    from atomsets_tf.models.loading import extra_outputs, load_model, predict_with_std

    materials = json.loads((PRETRAINED / "literature.json").read_text())["materials"].get(task, [])
    if not materials:
        return []
    table = Table(ids=[m["name"] for m in materials], inputs=[m["formula"] for m in materials], targets=None,
                  kind="composition")
    model = load_model(model_path)
    prediction, std = predict_with_std(model, table)
    nonzero = extra_outputs(model, table).get("probability_nonzero")
    return [{**m, "prediction": float(prediction[k]), "std": None if std is None else float(std[k]),
             "probability_nonzero": None if nonzero is None else float(nonzero[k])} for k, m in enumerate(materials)]


def zero_notes(rows: list[dict], task: str) -> str:
    """What the exact zeros of a two-part model rest on, read from the task's data: for each material the model
    puts at 0 though its literature value is not, its own entries in the data and the compounds of its elements."""
    from pymatgen.core import Composition

    from atomsets_tf.data.io import load

    zeros = [r for r in rows if r["prediction"] == 0 and r["value"] > 0 and r.get("probability_nonzero") is not None]
    if not zeros:
        return ""
    table = load(task)
    compositions = [Composition(x) for x in table.inputs]
    share = float((table.targets == 0).mean())
    lines = []
    for r in zeros:
        elements = set(Composition(r["formula"]).elements)
        same = [k for k, c in enumerate(compositions) if set(c.elements) == elements]
        itself = [k for k in same if compositions[k].reduced_formula == Composition(r["formula"]).reduced_formula]
        others = [k for k in same if k not in itself]
        said = (f"in the data at {', '.join(f'{table.targets[k]:g}' for k in itself)} eV" if itself
                else "not in the data")
        listed = ", ".join(f"{compositions[k].reduced_formula} {table.targets[k]:g}" for k in others[:8])
        near = (f"; the other {len(others)} compounds of only {'-'.join(sorted(e.symbol for e in elements))}: "
                f"{listed}{' ...' if len(others) > 8 else ''} eV") if others else (
            f"; no other compound of only {'-'.join(sorted(e.symbol for e in elements))} is either")
        lines.append(f"- `{r['formula']}` (P(gap > 0) = {r['probability_nonzero']:.2f}): {said}{near}.")
    return (f"\nThe exact zeros: the output has two parts, the probability that the gap is above 0 (`predict` "
            f"writes it as `probability_nonzero`) and the gap where it is; below 0.5 the prediction is exactly 0. "
            f"{share:.0%} of {task}'s {len(table)} entries are at 0 eV. For each material above that is put at 0, "
            f"what the data hold:\n\n" + "\n".join(lines) + "\n")


def literature_section(spec: dict, model_path: Path) -> str:
    rows = literature_rows(spec["task"], model_path)
    if not rows:
        return ""
    sources = json.loads((PRETRAINED / "literature.json").read_text())["sources"]
    unit = f" ({spec['unit']})" if spec.get("unit") else ""
    two_part = rows[0].get("probability_nonzero") is not None
    lines = [f"| {r['name']}{' (*)' if 'ambiguous' in r else ''} | `{r['formula']}` | {r['class']} | {r['value']:g} | "
             f"{r['prediction']:.4g}" + (f" ± {r['std']:.2g}" if r["std"] is not None else "")
             + (f" | {r['probability_nonzero']:.2f}" if two_part else "") + f" | {r['source']} |"
             for r in rows]
    notes = "".join(f"\n(*) {r['name']}: {r['ambiguous']}." for r in rows if "ambiguous" in r)
    cited = "\n".join(f"- {key}: {sources[key]}" for key in sorted({r["source"] for r in rows}))
    header = "| material | formula | class | literature | this model |" + (" P(gap > 0) |" if two_part else "")
    return f"""
## Well-known materials

Chosen for this card after the model was trained and chosen, never to choose it (a material may also be in the training data){unit}:

{header} source |
|---|---|---|---|---|{"---|" if two_part else ""}---|
{chr(10).join(lines)}
{notes}

{cited}
{zero_notes(rows, spec["task"])}"""


def uncertainty_section(summary: dict, spec: dict | None = None) -> str:
    """The uncertainty figures: the preset's own (an ensemble), else those of the ensemble variant measured beside
    it (``spec["uncertainty_from"]``), which lost to the single model on validation."""
    note = ""
    if "uncertainty" not in summary and (spec or {}).get("uncertainty_from"):
        variant = json.loads((ROOT / spec["uncertainty_from"] / "summary.json").read_text())
        val = sum(f["val"] for f in variant["folds"]) / len(variant["folds"])
        own = sum(f["val"] for f in summary["folds"]) / len(summary["folds"])
        note = (f"This preset is one model: the ensemble of 5 measured beside it (`{spec['uncertainty_from']}`) had a "
                f"mean validation {summary['metric']} of {val:.4g} against this model's {own:.4g}, so it was not "
                "chosen. The ensemble's figures, for a user who wants an uncertainty (train it with `--ensemble 5`):\n\n")
        summary = variant
    if "uncertainty" not in summary:
        return ""
    folder = spec.get("uncertainty_from") or spec.get("runs") if spec else None
    calibration = json.loads(CALIBRATION.read_text()).get(folder) if CALIBRATION.is_file() and folder else None
    if calibration is not None:  # both rescalings, each fitted on validation (benchmarks/recalibrate.py)
        m = calibration["mean"]
        u, raw, ml = m["miscalibration"], m["raw"], m["likelihood"]
    else:
        u, raw, ml = summary["uncertainty"], summary["uncertainty_raw"], None
    rows = [("Spearman(|error|, std)", "spearman_abs_error_std"), ("coverage of ±1σ (Gaussian: 0.683)", "coverage_1sigma"),
            ("coverage of ±2σ (Gaussian: 0.954)", "coverage_2sigma"), ("miscalibration area (0 = calibrated)",
                                                                        "miscalibration_area"), ("mean std", "mean_std")]
    table = "\n".join(f"| {label} | {raw[key]:.3g} | {u[key]:.3g} |" + (f" {ml[key]:.3g} |" if ml else "")
                      for label, key in rows)
    header = "| figure | raw spread | rescaled on validation |" + (" Gaussian likelihood rescaling |" if ml else "")
    rule = "|---|---|---|" + ("---|" if ml else "")
    return f"""
## Uncertainty

{note}The ensemble's std is its members' spread, rescaled by the factor with the smallest miscalibration area on
each fold's validation part (the Gaussian maximum-likelihood factor beside it, where measured). Test folds, mean
over the folds:

{header}
{rule}
{table}
"""


def model_card(spec: dict, summary: dict, fold0: dict, command: str) -> str:
    metric = summary["metric"]
    runs = "\n".join(f"| {r['fold']} | {r['n_train']} / {r['n_val']} / {r['n_test']} | {r['val']:.4g} | "
                     f"{r['test']:.4g} | {r['epochs_run']} (best {r['best_epoch']}) |" for r in summary["folds"])
    if summary["protocol"] == "matbench":
        protocol = ("the five official Matbench v0.1 folds; validation is 10 % of each fold's training part "
                    "(early stopping")
    else:
        protocol = "random 80/10/10 train / validation / test split (seed = fold; early stopping on validation"
    if spec["kind"] == "cgat":
        from atomsets_tf.models.cgat.family import CGAT_BENCHMARK_CONFIG

        width = ", ".join(f"{k} {v}" for k, v in CGAT_BENCHMARK_CONFIG.items())
        architecture = (f"the CPU-sized CGAT of `atomsets-tf benchmark --model cgat` ({width}; ReZero, vector "
                        "attention, hypernetwork updates as in Schmidt et al. 2021), trained from scratch. It reads "
                        "the matscholar element embedding (the `cgat-matscholar-embedding` preset, downloaded once)")
    else:
        config = summary["model_config"]
        architecture = (f"{config['units']} units, {config['n_layers_before_readout']} layers before and "
                        f"{config['n_layers_after_readout']} after the `{config['readout']}` readout, "
                        f"`{config['activation']}` (the AtomSets paper's Table 1 and S2), output "
                        f"`{fold0.get('output') or spec.get('output', 'linear')}`")
        if config.get("ensemble", 1) > 1:
            architecture += (f"; an ensemble of {config['ensemble']} such models with different seeds"
                             + (" and bootstrap samples" if config.get("bootstrap") else "")
                             + ", saved as one `.keras` model: its prediction is their mean, its std their spread")
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    std = (f" ± {summary['std']:.4g} (population std over {summary['n_folds']} folds)" if summary["n_folds"] > 1
           else " (one split: no spread to report)")
    unit = f" ({spec['unit']})" if spec.get("unit") else ""
    budget = (f"at most {summary['budget_epochs']} epochs" if summary["budget_epochs"]
              else f"up to {summary['training']['epochs']} epochs")
    return f"""# {spec['name']}

{spec['description']}.

- **Model:** `{spec['model']}`: {architecture}.
- **Data:** `{summary['task']}`, {summary['n_entries']} entries, target `{fold0['target']}` ({fold0['task_type']}).
- **Protocol:** {protocol}, patience {summary['training']['patience']}, {budget}, batch
  {summary['training']['batch_size']}, Adam lr {summary['training']['learning_rate']}).
- **This checkpoint** is fold 0's model: trained on {fold0['n_train']} entries, test {metric}
  {fold0[f'test_{metric}']:.4g} on its {fold0['n_test']} held-out entries{unit}.
- **Test {metric} over the folds:** {summary['mean']:.4g}{std}.

| fold | train / val / test | val {metric} | test {metric} | epochs |
|---|---|---|---|---|
{runs}

## Use

```python
from atomsets_tf.models.loading import load_model
model = load_model("{spec['name']}")
```

```bash
atomsets-tf predict {spec['name']} DATA -o predictions.csv
```

## Retrain

```bash
{command}
```

(`python benchmarks/build_pretrained.py {spec['name']}` runs it and rewrites this folder.)

## Versions

{versions}.

## Limits

- Trained on {summary['n_entries']} entries of one data set: predictions outside its chemistry are extrapolations.
- Elements outside the model's element table are refused with an error, not guessed.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="presets to build (default: all)")
    ap.add_argument("--cards-only", action="store_true", help="rewrite the cards from pretrained/<name>/metrics.json")
    ap.add_argument("--well-known-only", action="store_true",
                    help="rewrite only the cards' well-known-materials section (needs the task's data, no run folder)")
    args = ap.parse_args(argv)
    if args.well_known_only:
        for spec in PRESETS:
            if not args.names or spec["name"] in args.names:
                rewrite_well_known(spec, PRETRAINED / spec["name"])
        return 0
    if args.cards_only:
        for spec in PRESETS:
            if not args.names or spec["name"] in args.names:
                dest = PRETRAINED / spec["name"]
                saved = json.loads((dest / "metrics.json").read_text())
                write_card(spec, dest, saved["benchmark"], saved["fold_0"])
        return 0
    registry_path = PRETRAINED / "presets.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {"presets": []}
    entries = {e["name"]: e for e in registry["presets"]}
    for spec in PRESETS:
        if not args.names or spec["name"] in args.names:
            entries[spec["name"]] = build(spec)
            print(f"built {spec['name']}", flush=True)
    order = [s["name"] for s in PRESETS]
    registry["presets"] = sorted(entries.values(), key=lambda e: order.index(e["name"]) if e["name"] in order else 99)
    registry_path.write_text(json.dumps(registry, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
