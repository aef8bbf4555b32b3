"""Smoke figure: ROC-AUC of a tiny CGAT retrained (head / full) on mp_is_metal_100, on held-out test splits.

The parent is a tiny CGAT (matscholar embedding, 2 message steps of width 16) trained from scratch on the
formation energies of mp_ef_100; a tiny CGAT with random weights is the control. Each retrain uses a 50/25/25
split (``val_fraction=0.25``, folds 0-2). Writes ``smoke.json`` to the run folder given (default below).

    nice -n 10 python benchmarks/results/cgat_is_metal/run.py [OUT]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras

from atomsets_tf.data.io import load
from atomsets_tf.models.cgat.elements import load_matscholar_embedding
from atomsets_tf.models.cgat.model import CGAT
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.retrain import retrain

STRUCTURES = Path(__file__).resolve().parents[4] / "shared" / "data" / "structures"


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    embedding = load_matscholar_embedding()
    keras.utils.set_random_seed(7)
    tiny = CGAT(orig_elem_fea_len=embedding.dim, elem_fea_len=16, n_graph=2, nbr_embedding_size=16,
                neighbor_number=6, msg_heads=2, n_graph_roost=1, out_hidden=(32, 16),
                elements=list(embedding.symbols), radius=12.0)  # mp_ef_100 has a site with 6 neighbours in 12 A
    tiny.set_element_embedding(embedding)
    tiny.save(out / "tiny_random.keras")
    parent = retrain(out / "tiny_random.keras", load(STRUCTURES / "mp_ef_100.json"), "scratch",
                     training=TrainingConfig(epochs=60, patience=15, batch_size=16), out_dir=out / "parent_ef",
                     progress=False)
    print("parent Ef test MAE", parent.metrics["test_mae"], flush=True)
    metals = load(STRUCTURES / "mp_is_metal_100.json")
    rows = []
    for parent_file in ("parent_ef/model.keras", "tiny_random.keras"):
        for mode in ("head", "full"):
            for fold in (0, 1, 2):
                start = time.time()
                r = retrain(out / parent_file, metals, mode, fold=fold, val_fraction=0.25,
                            training=TrainingConfig(epochs=40, patience=10, batch_size=16),
                            out_dir=out / f"{parent_file.split('/')[0].replace('.keras', '')}_{mode}_{fold}",
                            progress=False)
                row = dict(parent=parent_file, mode=mode, fold=fold, n_train=r.metrics["n_train"],
                           n_test=r.metrics["n_test"], test_roc_auc=r.metrics["test_roc_auc"],
                           val_roc_auc=r.metrics["val_roc_auc"], epochs_run=r.metrics["epochs_run"],
                           wall_s=round(time.time() - start, 1))
                print(row, flush=True)
                rows.append(row)
    (out / "smoke.json").write_text(json.dumps({"parent_ef_test_mae": parent.metrics["test_mae"], "runs": rows},
                                               indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "runs" / "acc" / "cgatcls")
