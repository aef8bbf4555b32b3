"""File helpers: atomic writes, output checks and locks, locating the project's shared data."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from atomsets_tf.errors import AtomSetsError, OutputPathError, RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; output folders are not locked there
    fcntl = None

#: Environment variable naming a folder laid out like the project's ``shared/``
#: (``data/``, ``pretrained/``, ``golden/``).
SHARED_ENV = "ATOMSETS_TF_SHARED"
#: The file in an output folder that :func:`output_lock` locks; it holds the holder's pid and host.
LOCK_FILE = ".lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    A reader never sees a half-written file: either the old file or the new
    one. On an exception the temporary file is removed and ``path`` is untouched;
    an ``OSError`` about the temporary file is raised anew naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:
        # The temporary name ends with the final name, so suffix-sensitive writers
        # (Keras wants ``.keras`` / ``.weights.h5``) accept it.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        tmp_path.unlink()  # writers create it themselves (some refuse to overwrite)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno is None or not _names_temporary(exc, path):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if tmp_path is not None and tmp_path.is_dir() and not tmp_path.is_symlink():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def _names_temporary(exc: OSError, path: Path) -> bool:
    """Whether ``exc`` is about a temporary file of :func:`atomic_path` for ``path``."""
    names = [Path(os.fsdecode(f)).name for f in (exc.filename, exc.filename2) if f is not None]
    return any(n.startswith(".tmp-") and n.endswith(f"-{path.name}") for n in names)


def check_writable(path: str | os.PathLike, suffixes: Iterable[str] = ()) -> Path:
    """Refuse, before any work, an output file that could not be written; returns it as a Path.

    ``path`` must end in one of ``suffixes`` (when given), must not be a folder,
    and its folder must exist or be creatable (its nearest existing ancestor a
    writable folder). Nothing is created.

    Raises:
        OutputPathError: naming ``path`` and what is wrong.
    """
    path = Path(path)
    suffixes = tuple(suffixes)
    if suffixes and not path.name.endswith(suffixes):
        raise OutputPathError(f"the output file must end in {' or '.join(suffixes)}, got {path}")
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder")
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot write {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {path}: the folder {ancestor} is not writable")
    return path


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``folder`` (created if needed) while in the block.

    The lock is an ``flock`` on ``folder/.lock``, which names the holder (pid and
    host). The kernel drops it when its holder dies, so a lock file that a
    killed run left behind (a stale lock) is simply taken over. The file is
    removed on release, and so is ``folder`` when this call created it and
    it is still empty. Without ``flock`` (Windows) nothing is locked.

    Raises:
        RunLockedError: another process holds the lock; the message names it.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path) if fcntl is not None else None
    try:
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # while still holding it: a waiting process then retries on a new file
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # a run that wrote nothing leaves no empty folder (rmdir keeps a non-empty one)


def _acquire(path: Path) -> int | None:
    """An open descriptor of ``path`` with its ``flock`` held and this process written in it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunLockedError(f"{path.parent} is in use by another run ({holder}): wait for it to end, "
                                 f"or use another output folder") from None
        except OSError as exc:  # a file system without locks (some network mounts)
            os.close(fd)
            warnings.warn(f"cannot lock {path} ({exc}); not protected against a second run", stacklevel=3)
            return None
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return fd


def _lock_holder(fd: int) -> str:
    """Who holds a lock file, from its content: ``process <pid> on <host>``."""
    try:
        words = os.pread(fd, 4096, 0).decode(errors="replace").split()
    except OSError:
        words = []
    if not words:
        return "a process that has not yet written its pid"
    return f"process {words[0]}" + (f" on {words[1]}" if len(words) > 1 else "")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def shared_dir() -> Path | None:
    """The project's development folder ``shared/`` (data, pretrained checkpoints, golden outputs), if
    ``$ATOMSETS_TF_SHARED`` names one (a folder with ``data/`` or ``pretrained/``).

    Only the variable is read: no folder is guessed from the current directory or the source checkout, so an
    unrelated folder named ``shared`` never changes where data and presets come from. Returns ``None``
    without it: a user install never needs it (the tests and ``.ci/run`` set it to the checkout's ``../shared``).
    """
    value = os.environ.get(SHARED_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    return folder if (folder / "data").is_dir() or (folder / "pretrained").is_dir() else None


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 64 kB blocks (``hashlib.file_digest`` needs Python 3.11)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def listed_file(folder: str | os.PathLike, name: object, listed_by: str | os.PathLike,
                error: type[AtomSetsError]) -> Path:
    """``folder / name`` for a file that an index of ``folder`` (a manifest) names, refused unless it stays inside.

    ``name`` must be a plain file name: no path separator (``/`` or ``\\``), not ``.`` or ``..``, not absolute,
    no drive, and not a symlink that resolves outside ``folder``. Nothing is read: call it before opening.

    Args:
        folder: the folder the index describes.
        name: the file name the index holds.
        listed_by: the index, for the message.
        error: the error to raise (the reader's own kind).

    Returns:
        The path of the file in ``folder``.

    Raises:
        error: naming ``folder``, ``listed_by`` and the entry.
    """
    why = None
    if not isinstance(name, str) or not name or name in (".", "..") or "\0" in name:
        why = "not a file name"
    elif "/" in name or "\\" in name or os.path.isabs(name) or PureWindowsPath(name).drive:
        why = "a path, not a plain file name"
    path = Path(folder) / str(name)
    if why is None and path.is_symlink():
        try:
            root, target = Path(folder).resolve(strict=True), path.resolve(strict=True)
            if root not in target.parents:
                why = "a symlink that leads out of the folder"
        except (OSError, RuntimeError):  # a dangling link, or a loop
            why = "a symlink that leads to no file"
    if why is not None:
        raise error(f"{listed_by} lists the file {name!r}, which is {why}: refused (every file it lists must lie "
                    f"in {folder})")
    return path


def check_file_size(path: Path, expected: object, listed_by: str | os.PathLike, error: type[AtomSetsError]) -> None:
    """Refuse ``path`` unless it holds ``expected`` bytes, as its index ``listed_by`` records (a cheap check of a
    truncated, grown or missing file, before reading it).

    Raises:
        error: naming the file, its size and the recorded one.
    """
    try:
        actual = path.stat().st_size
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc})") from None
    if actual != expected:
        raise error(f"{path} is truncated or corrupt: {actual} bytes, {listed_by} records {expected}")
