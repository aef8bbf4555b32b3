"""File helpers: atomic writes and locating the project's shared data."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Environment variable naming a folder laid out like the project's ``shared/``
#: (``data/``, ``pretrained/``, ``golden/``).
SHARED_ENV = "ATOMSETS_TF_SHARED"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    A reader never sees a half-written file: either the old file or the new
    one. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends with the final name, so suffix-sensitive writers
    # (Keras wants ``.keras`` / ``.weights.h5``) accept it.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers create it themselves (some refuse to overwrite)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def shared_dir() -> Path | None:
    """The project's ``shared/`` folder, if one is reachable.

    Looks at ``$ATOMSETS_TF_SHARED`` first, then at ``../shared`` relative to the
    current directory and to the source checkout. Returns ``None`` for a user
    install without it: the package never requires it.
    """
    candidates = []
    if os.environ.get(SHARED_ENV):
        candidates.append(Path(os.environ[SHARED_ENV]))
    candidates.append(Path.cwd().parent / "shared")
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared")
    for c in candidates:
        if (c / "data").is_dir() or (c / "pretrained").is_dir():
            return c
    return None
