"""Toy record builders for tests/test_prepared.py: TensorFlow-free, so worker processes import them fast."""

from __future__ import annotations

import os

import numpy as np

from atomsets_tf.data.records import FieldSpec, RecordSchema
from atomsets_tf.errors import EmptyStructureError

TOY_SCHEMA = RecordSchema(
    fields={
        "z": FieldSpec("uint8", (), "atoms", "int32"),
        "pos": FieldSpec("float32", (3,), "atoms", "float32"),
        "pairs": FieldSpec("int32", (2,), "bonds", "int32"),
        "state": FieldSpec("float32", (2,), None, "float32"),
    },
    masks={"atom_mask": "atoms", "bond_mask": "bonds"},
    multiples={"atoms": 4, "bonds": 8},
    size_group="atoms",
)


def toy_entries(n: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    """``n`` small numpy "structures" of 1 to 12 atoms (ids e000, e001, ...)."""
    rng = np.random.default_rng(seed)
    entries = []
    for _ in range(n):
        n_atoms = int(rng.integers(1, 13))
        entries.append({"z": rng.integers(1, 90, n_atoms), "pos": rng.normal(size=(n_atoms, 3)),
                        "state": rng.normal(size=2)})
    return [f"e{k:03d}" for k in range(n)], entries


class ToyBuilder:
    """Records of toy entries; an entry whose ``z`` holds 0 fails (EmptyStructureError).

    ``work`` repeats a CPU-bound loop per entry (for timing the process pool);
    ``exit_at`` kills the process (``os._exit(3)``) when it reaches that id.
    """

    kind = "toy-graph"
    schema = TOY_SCHEMA

    def __init__(self, cutoff: float = 3.0, work: int = 0, exit_at: str | None = None):
        self.cutoff = cutoff
        self.work = work
        self.exit_at = exit_at

    @property
    def settings(self) -> dict:
        return {"cutoff": self.cutoff}

    def __call__(self, entry: dict, entry_id: str) -> dict[str, np.ndarray]:
        if entry_id == self.exit_at:
            os._exit(3)
        if np.any(entry["z"] == 0):
            raise EmptyStructureError("an atom of atomic number 0")
        pos = np.asarray(entry["pos"], dtype=np.float32)
        for _ in range(self.work):
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        i, j = np.nonzero((d < self.cutoff) & (d > 0))
        return {"z": entry["z"].astype(np.uint8), "pos": pos, "pairs": np.stack([i, j], 1).astype(np.int32),
                "state": np.asarray(entry["state"], dtype=np.float32)}
