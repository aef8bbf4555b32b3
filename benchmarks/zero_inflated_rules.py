"""How a two-part (zero-inflated) model's parts are best combined, measured on validation (and reported on test).

    python benchmarks/zero_inflated_rules.py runs/acc/expt_gap/v0-zi [more benchmark folders]

For each fold's ``model.keras`` of an ``atomsets-tf benchmark`` folder: the MAE of the ``median`` rule (the
magnitude where p >= 0.5, else 0), of the ``mean`` rule (p times the magnitude), and the accuracy of p >= 0.5 as a
metal / non-metal call, on the fold's validation and test parts. Prints a table; writes
``benchmarks/results/zero_inflated_rules.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from atomsets_tf.data.splits import make_splits
from atomsets_tf.evaluation.runners import load_task
from atomsets_tf.models.base import compiled_forward, size_bucketed_batches
from atomsets_tf.models.loading import load_model
from atomsets_tf.models.registry import family_of

ROOT = Path(__file__).resolve().parents[1]


def parts(model, sets) -> tuple[np.ndarray, np.ndarray]:
    """``(p, m)`` of every example: the probability of a positive target and the magnitude."""
    forward = compiled_forward(model, sets.tensor_spec())
    out = np.empty((len(sets), 3))
    for idx in size_bucketed_batches(sets.sizes(), 256):
        out[idx] = np.asarray(forward(sets.padded(idx)))
    return out[:, 1], out[:, 2]


def fold_rules(folder: Path, fold: int) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    table = load_task(summary["task"], summary["model"])
    seed = summary["training"]["seed"] + fold
    splits = make_splits(table, summary["protocol"], fold, seed, 0.1, None)
    model = load_model(folder / f"fold_{fold}" / "model.keras")
    sets = family_of(model).examples(model, table)
    p, m = parts(model, sets)
    row = {"fold": fold}
    for part, idx in (("val", splits[1]), ("test", splits[2])):
        y = table.targets[idx]
        row[f"{part}_mae_median"] = float(np.mean(np.abs(y - np.where(p[idx] >= 0.5, m[idx], 0.0))))
        row[f"{part}_mae_mean"] = float(np.mean(np.abs(y - p[idx] * m[idx])))
        row[f"{part}_metal_accuracy"] = float(np.mean((p[idx] >= 0.5) == (y > 0)))
    return row


def main(folders: list[str]) -> int:
    results = {}
    for name in folders:
        folder = Path(name)
        rows = [fold_rules(folder, k) for k in range(5) if (folder / f"fold_{k}" / "model.keras").is_file()]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "fold"}
        results[str(folder)] = {"folds": rows, "mean": mean}
        print(f"{folder}: " + ", ".join(f"{k} {v:.4g}" for k, v in mean.items()))
    out = ROOT / "benchmarks" / "results" / "zero_inflated_rules.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
