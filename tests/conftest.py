"""Shared fixtures: the project's ../shared folder and small data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Tests marked ``isolated`` run in a child process of their own (``_isolated.py``).
pytest_plugins = ["_isolated"]

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
# The package finds the development folder only through $ATOMSETS_TF_SHARED (atomsets_tf.utils.io.shared_dir):
# point it at the checkout's ../shared, at import, so that the processes the tests start inherit it.
if (ROOT.parent / "shared").is_dir():
    os.environ.setdefault("ATOMSETS_TF_SHARED", str(ROOT.parent / "shared"))
SHARED = Path(os.environ.get("ATOMSETS_TF_SHARED") or ROOT.parent / "shared")


@pytest.fixture(scope="session")
def shared() -> Path:
    """``$ATOMSETS_TF_SHARED`` (by default ``../shared`` beside the project root); tests that need it skip without
    it."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No ../shared, an empty cache and models folder, and every download refused: only what the package ships."""
    from atomsets_tf import presets

    monkeypatch.setattr(presets, "shared_dir", lambda: None)
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.delenv(presets.MODELS_ENV, raising=False)

    def no_download(pf, dest, progress=False):
        raise OSError(f"offline: {pf.url}")

    monkeypatch.setattr(presets, "_download", no_download)
