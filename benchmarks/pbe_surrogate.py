"""A PBE data set for the CGAT parent of the PBE -> RPBE transfer experiment.

We have no large PBE structure set for CGAT to pretrain on, so the parent
learns a PBE surrogate: the formation energy per cell that the published
MEGNet model (trained on PBE Materials Project data) predicts for perovskite
structures. The structures come from the learning curve's training pool only
(never its fixed test set); their RPBE targets are not used.

    python benchmarks/pbe_surrogate.py -o runs/perovskites_pbe_surrogate.json.gz

Then (see benchmarks/perovskite_transfer.sh) a CGAT is trained on it and
transferred to the RPBE targets in the CGAT paper's three modes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.checkout, run or imported
from benchmarks.checkout import use_checkout_shared  # noqa: E402

use_checkout_shared()  # the development folder: $ATOMSETS_TF_SHARED, else the checkout's ../shared

from atomsets_tf.data.io import load  # noqa: E402
from atomsets_tf.evaluation.learning_curve import nested_splits  # noqa: E402
from atomsets_tf.models.atomsets.features import DEFAULT_SOURCE  # noqa: E402
from atomsets_tf.models.loading import load_model, predict_table  # noqa: E402
from atomsets_tf.utils.io import atomic_path, shared_dir  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(shared_dir() / "data/structures/matbench_perovskites_val_subset.json.gz"))
    ap.add_argument("--n", type=int, default=1500, help="structures in the surrogate set")
    ap.add_argument("--sizes", default="100,200,400,800", help="the learning curve's sizes (for its test set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    table = load(args.data)
    splits = nested_splits(table, [int(s) for s in args.sizes.split(",")], protocol="paper", fold=0, seed=args.seed)
    test = set(next(iter(splits.values()))["test"])
    pool = [i for i, sid in enumerate(table.ids) if sid not in test]
    chosen = np.sort(np.random.default_rng(args.seed).choice(pool, size=min(args.n, len(pool)), replace=False))
    subset = table.subset(chosen)
    per_atom = predict_table(load_model(DEFAULT_SOURCE), subset, batch_size=64)
    per_cell = per_atom * np.array([len(s) for s in subset.inputs])
    record = {"index": list(subset.ids), "columns": ["structure", "e_form_pbe_megnet_per_cell"],
              "data": [[s.as_dict(), float(y)] for s, y in zip(subset.inputs, per_cell)]}
    with atomic_path(args.output) as tmp, gzip.open(tmp, "wt") as fh:
        json.dump(record, fh)
    rpbe = subset.targets
    print(f"{len(subset)} structures (none from the test set of {len(test)}); PBE surrogate vs RPBE target: "
          f"mean {per_cell.mean():.3f} vs {rpbe.mean():.3f} eV/cell, MAE between them {np.abs(per_cell - rpbe).mean():.3f}")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
