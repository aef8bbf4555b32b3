"""What a run writes: the model, ``metrics.json``, prediction CSVs, tap ``.npz`` files, and package versions.

Every file is written atomically (:func:`~atomsets_tf.utils.io.atomic_path`).
"""

from __future__ import annotations

import csv
import platform
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from atomsets_tf._version import __version__
from atomsets_tf.data.taps import pack_taps
from atomsets_tf.utils.io import atomic_path, write_json_atomic


def write_outputs(out_dir, model, metrics: dict, ids, targets, predictions, save_model=None) -> None:
    """Write ``model.keras`` (unless ``model`` is None), ``metrics.json`` and ``test_predictions.csv`` atomically."""

    out = Path(out_dir)
    if model is not None:
        with atomic_path(out / "model.keras") as tmp:
            (save_model or (lambda m, p: m.save(p)))(model, tmp)
    write_json_atomic(out / "metrics.json", metrics)
    write_predictions_csv(out / "test_predictions.csv", ids, predictions, targets)


def write_predictions_csv(path, ids, predictions, targets=None) -> None:
    """Write ``id,prediction`` (or ``id,target,prediction``) CSV atomically."""

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "prediction"] if targets is None else ["id", "target", "prediction"])
        for k, i in enumerate(ids):
            row = [i, repr(float(predictions[k]))]
            if targets is not None:
                row.insert(1, repr(float(targets[k])))
            w.writerow(row)


def versions() -> dict:
    """Versions of the packages that determine the numbers."""

    return {
        "atomsets_tf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_taps_npz(path, ids, taps: dict) -> None:
    """Write tapped features as ``.npz`` atomically, in the layout of :mod:`atomsets_tf.data.taps`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **pack_taps(ids, taps))
