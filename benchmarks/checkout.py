"""Benchmarks run from the repository: the development folder is the checkout's ``../shared``.

The package finds that folder only through ``$ATOMSETS_TF_SHARED`` (:func:`atomsets_tf.utils.io.shared_dir`);
:func:`use_checkout_shared` sets it to ``../shared`` beside this checkout unless it is set already, so the
benchmarks, and the processes they start, read its data and checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout (the folder above benchmarks/).
ROOT = Path(__file__).resolve().parents[1]


def use_checkout_shared() -> None:
    """Point ``$ATOMSETS_TF_SHARED`` at the checkout's ``../shared`` unless it names a folder already."""
    os.environ.setdefault("ATOMSETS_TF_SHARED", str(ROOT.parent / "shared"))
