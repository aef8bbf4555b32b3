"""Small data sets and writers the tests share."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from atomsets_tf.data.io import Table


def learnable_table(n=120, seed=0) -> Table:
    """Binary alloys whose target is a smooth function of composition (so a model must beat the mean)."""
    rng = np.random.default_rng(seed)
    metals = ["Fe", "Ni", "Co", "Cu", "Al", "Ti", "Cr", "Mn"]
    strength = dict(zip(metals, [5.0, 1.0, 3.0, -2.0, -4.0, 2.0, 0.0, 4.0]))
    ids, comps, ys = [], [], []
    for k in range(n):
        a, b = rng.choice(metals, 2, replace=False)
        x = rng.uniform(0.05, 0.95)
        ids.append(f"alloy-{k:03d}")
        comps.append(f"{a}{x:.3f}{b}{1 - x:.3f}")
        ys.append(100.0 + 10.0 * (x * strength[a] + (1 - x) * strength[b]))
    return Table(ids, comps, np.array(ys), "composition", "y", "synthetic")


def write_csv(table: Table, path: Path) -> Path:
    """A composition table as ``id,composition,<target>`` CSV."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "composition", table.target_name])
        for i, c, y in zip(table.ids, table.inputs, table.targets):
            w.writerow([i, c, y])
    return path


def write_matbench_json(table: Table, path: Path, target: str = "target") -> Path:
    """A structure table in matbench's layout (``{"index", "columns", "data"}``)."""
    path.write_text(json.dumps({"index": table.ids, "columns": ["structure", target],
                                "data": [[s.as_dict(), float(t)] for s, t in zip(table.inputs, table.targets)]}))
    return path


def toy_crystals(srtio3_a: float = 4.0, with_nacl: bool = False) -> list:
    """Six small crystals (CsCl, Cu, Si, ZnO, cubic SrTiO3 of lattice ``srtio3_a``, rutile TiO2), then rock salt."""
    from pymatgen.core import Lattice, Structure

    crystals = [
        Structure(Lattice.cubic(4.11), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]),
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
        Structure(
            Lattice.cubic(srtio3_a),
            ["Sr", "Ti", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ),
        Structure(
            Lattice.tetragonal(4.6, 2.96),
            ["Ti", "Ti", "O", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]],
        ),
    ]
    if with_nacl:
        crystals.append(
            Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    return crystals


def cgat_toy_crystals() -> dict:
    """Rock salt, diamond Si, a low-symmetry SiO2 and fcc Cu (the CGAT tests' crystals), by name."""
    from pymatgen.core import Lattice, Structure

    return {
        "nacl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "si": Structure(Lattice([[0, 2.73, 2.73], [2.73, 0, 2.73], [2.73, 2.73, 0]]), ["Si", "Si"],
                        [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "sio2": Structure(Lattice.hexagonal(4.9, 5.4), ["Si", "O", "O", "Si", "O"],
                          [[0.47, 0, 0], [0.41, 0.27, 0.12], [0.73, 0.15, 0.45], [0.0, 0.47, 0.66],
                           [0.27, 0.41, 0.79]]),
        "cu": Structure(Lattice([[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]]), ["Cu"], [[0, 0, 0]]),
    }
