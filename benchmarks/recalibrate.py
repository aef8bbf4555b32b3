"""The uncertainty figures of finished ensemble benchmarks under both variance rescalings, side by side.

    python benchmarks/recalibrate.py runs/acc/expt_gap/v0-zi-head-from-mp_gap-ens5 [more folders]

For each fold's ensemble: the raw spread, the Gaussian maximum-likelihood factor and the factor with the smallest
miscalibration area, each fitted on the fold's validation part and scored on its test part. Nothing in the run
folders is changed. Prints a table; writes ``benchmarks/results/calibration.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from atomsets_tf.data.splits import make_splits
from atomsets_tf.evaluation.runners import load_task
from atomsets_tf.models.loading import load_model, predict_with_std
from atomsets_tf.training.metrics import fit_std_scale, uncertainty_scores

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ("likelihood", "miscalibration")


def fold_calibration(table, folder: Path, fold: int, seed: int) -> dict:
    ensemble = load_model(folder / f"fold_{fold}" / "model.keras")
    ensemble.std_scale = 1.0
    _, val, test = make_splits(table, "matbench", fold, seed, 0.1, None)
    (vp, vs), (tp, ts) = (predict_with_std(ensemble, table.subset(idx)) for idx in (val, test))
    row = {"fold": fold, "raw": uncertainty_scores(table.targets[test], tp, ts)}
    for objective in OBJECTIVES:
        scale = fit_std_scale(table.targets[val], vp, vs, objective)
        row[objective] = {"std_scale": scale, **uncertainty_scores(table.targets[test], tp, ts * scale)}
    return row


def main(folders: list[str]) -> int:
    out = ROOT / "benchmarks" / "results" / "calibration.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name in folders:
        folder = Path(name)
        summary = json.loads((folder / "summary.json").read_text())
        table = load_task(summary["task"], summary["model"])
        rows = [fold_calibration(table, folder, f["fold"], summary["training"]["seed"] + f["fold"])
                for f in summary["folds"]]
        mean = {kind: {k: float(np.mean([r[kind][k] for r in rows])) for k in rows[0][kind]}
                for kind in ("raw", *OBJECTIVES)}
        results[folder.as_posix()] = {"folds": rows, "mean": mean}
        for kind, scores in mean.items():
            print(f"{folder.as_posix():<50} {kind:<15} " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
