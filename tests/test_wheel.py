"""The wheel is the product: built from the tracked files, without setuptools warnings, it holds every file the
package reads. (``.ci/wheel_check.sh`` installs such a wheel in a fresh venv and runs it from an empty folder.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel must carry besides code: the package's data folders, and ``pretrained/`` (installed as
#: ``atomsets_tf/pretrained/``), as (folder in the repository, folder in the wheel).
DATA_FOLDERS = (("atomsets_tf", "atomsets_tf"), ("pretrained", "atomsets_tf/pretrained"))
#: What setuptools says of a folder it leaves out (the warnings this test forbids).
LEFT_OUT = ("would be ignored", "absent from the `packages` configuration", "SetuptoolsDeprecationWarning")


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str, list[str]]:
    """A wheel built (as ``pip wheel`` does, in an isolated build environment) from a copy of the tracked files,
    with the build's output."""
    tracked = _tracked_files()
    src = tmp_path_factory.mktemp("wheel") / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    dist = src.parent / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist), str(src)],
                       capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    if r.returncode != 0 and ("Could not find a version that satisfies" in log or "NewConnectionError" in log):
        pytest.skip("pip cannot get setuptools for the isolated build (offline)")
    assert r.returncode == 0, log[-3000:]
    (wheel,) = dist.glob("atomsets_tf-*.whl")
    return wheel, log, tracked


def test_the_wheel_builds_without_setuptools_warnings(built):
    _, log, _ = built
    said = [line.strip() for line in log.splitlines() if any(s in line for s in LEFT_OUT)]
    assert not said, said


def test_the_wheel_holds_every_tracked_file_of_the_package(built):
    wheel, _, tracked = built
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {f"{inside}/{name[len(folder) + 1:]}" for name in tracked for folder, inside in DATA_FOLDERS
                if name.startswith(f"{folder}/")}
    assert "atomsets_tf/pretrained/megnet/elemental_embedding_1MEGNet_layer.json" in expected
    assert "atomsets_tf/resources/megnet_v0/megnet-mp-2019.4.1-formation_energy.json.gz" in expected
    assert sorted(expected - names) == []
