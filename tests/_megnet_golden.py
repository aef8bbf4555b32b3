"""Helpers shared by the MEGNet parity tests: golden files, structures, and key mapping."""

from __future__ import annotations

import gzip
import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np

from atomsets_tf.utils.io import shared_dir

GOLDEN_MODELS = {
    "mp-2019.4.1_formation_energy": "mp-2019.4.1/formation_energy.hdf5",
    "mp-2019.4.1_log10K": "mp-2019.4.1/log10K.hdf5",
    "mp-2019.4.1_efermi": "mp-2019.4.1/efermi.hdf5",
    "mp-2018.6.1_formation_energy": "mp-2018.6.1/formation_energy.hdf5",
}
GOLDEN_SETS = ("A_jdft2d_first40", "C_mp_ef_100")


def golden_dir() -> Path | None:
    s = shared_dir()
    if s is None or not (s / "golden" / "megnet").is_dir():
        return None
    return s / "golden" / "megnet"


def pretrained_dir() -> Path | None:
    s = shared_dir()
    if s is None or not (s / "pretrained" / "megnet").is_dir():
        return None
    return s / "pretrained" / "megnet"


@cache
def set_structures(set_tag: str) -> tuple[list[str], list[dict]]:
    """(ids, structure dicts) of a golden structure set, in the golden's order."""
    s = shared_dir()
    if set_tag == "A_jdft2d_first40":
        with gzip.open(s / "data" / "matbench" / "matbench_jdft2d.json.gz", "rt") as fh:
            d = json.load(fh)
        col = d["columns"].index("structure")
        return list(d["index"][:40]), [row[col] for row in d["data"][:40]]
    if set_tag == "C_mp_ef_100":
        d = json.loads((s / "data" / "structures" / "mp_ef_100.json").read_text())
        return [f"mp_ef_100-{i:03d}" for i in range(len(d["structure"]))], list(d["structure"])
    raise KeyError(set_tag)


def golden_key_map(n_blocks: int = 3) -> dict[str, str]:
    """Our tap name -> the golden npz key (Keras 2.2.4 auto-names)."""
    m = {
        "V0": "embedding_1",
        "v_r": "set2_set_1",
        "e_r": "set2_set_2",
        "f": "concatenate_1",
        "readout_1": "dense_19",
        "readout_2": "dense_20",
        "raw_output": "dense_21",
        "prediction": "prediction",
    }
    for k in range(1, n_blocks + 1):
        for j, t in enumerate("VEu"):
            m[f"{t}{k}"] = f"meg_net_layer_{k}/{j}"
            m[f"{t}{k}_residual"] = f"add_{3 * (k - 1) + j + 1}"
    return m


def bond_order(index1: np.ndarray, index2: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """A canonical bond order (by centre, neighbour, distance); ties are identical bonds."""
    return np.lexsort((distance, index2, index1))


def run_case(model, model_tag: str, set_tag: str, batch_size: int = 16):
    """Run ``model`` on a golden set from the structures; return (golden npz, index json, ids, graphs, taps)."""
    gdir = golden_dir()
    z = np.load(gdir / f"{model_tag}__{set_tag}.npz")
    index = json.loads((gdir / f"{model_tag}__{set_tag}.json").read_text())
    ids, structures = set_structures(set_tag)
    ok = {s["id"] for s in index["structures"] if s["status"] == "ok"}
    keep = [i for i, sid in enumerate(ids) if sid in ok]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = model.graphs([structures[i] for i in keep], ids=[ids[i] for i in keep])
    taps = model.run_graphs(graphs, model.tap_names, batch_size=batch_size)
    return z, index, [ids[i] for i in keep], graphs, taps


def compare_case(z, ids, graphs, taps, key_map) -> dict[str, float]:
    """Max abs difference per tap between ``taps`` and the golden arrays (bonds aligned canonically)."""
    errors: dict[str, float] = {}
    for name, key in key_map.items():
        worst = 0.0
        for i, (sid, g) in enumerate(zip(ids, graphs, strict=True)):
            ref = z[f"{sid}/{key}"]
            ours = taps[name][i]
            if name.startswith("E"):
                ours = ours[bond_order(g.index1, g.index2, g.distance)]
                ref = ref[bond_order(z[f"{sid}/inputs/index1"], z[f"{sid}/inputs/index2"], z[f"{sid}/inputs/distance"])]
            ref = np.asarray(ref).reshape(np.shape(ours))
            worst = max(worst, float(np.max(np.abs(np.asarray(ours, np.float64) - ref))))
        errors[name] = worst
    return errors
