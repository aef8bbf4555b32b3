"""Repository hygiene: ruff-clean code, no machine paths, README commands match CI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    r = subprocess.run([ruff, "check", "atomsets_tf", "tests", "benchmarks", "tutorials", "setup.py"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


#: The README's test command: it installs with the committed lock of tested versions.
TEST_COMMAND = ('pip install -e ".[cpu,test]" "torch==2.13.0" -c constraints.txt && pip install --no-deps "matbench==0.6" '
                '&& python -m pytest -q')


def test_ci_runs_the_readme_test_command_with_the_lock():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme and TEST_COMMAND in ci


def test_the_lock_pins_every_package_exactly():
    lines = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    assert pins and all("==" in ln and not ln.startswith("-e") for ln in pins), pins
    names = {ln.split("==")[0].lower().replace("_", "-") for ln in pins}
    assert {"tensorflow-cpu", "keras", "pymatgen", "numpy", "torch"} <= names
    assert "atomsets-tf" not in names  # the project itself is never pinned


#: Where binary files may be tracked: our trained checkpoints, the embedded default data set, and the
#: figures that BENCHMARKS.md shows.
BINARY_ALLOWED = ("pretrained/", "atomsets_tf/resources/")
FIGURE_SUFFIXES = (".png", ".svg")
DATA_SUFFIXES = (".pkl", ".pickle", ".npz", ".npy", ".h5", ".hdf5", ".keras", ".pt", ".pth", ".ckpt", ".joblib",
                 ".gz", ".zip", ".tar", ".bz2", ".xz", ".parquet", ".feather", ".tfrecord")


def _is_binary(path: Path) -> bool:
    return b"\0" in path.read_bytes()[:8192]


def test_no_pickle_or_binary_data_tracked_outside_pretrained_and_resources():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tracked = [f for f in files.decode().split("\0") if f and (ROOT / f).is_file()]
    offending = [f for f in tracked if not f.startswith(BINARY_ALLOWED) and not f.endswith(FIGURE_SUFFIXES)
                 and (f.lower().endswith(DATA_SUFFIXES) or _is_binary(ROOT / f))]
    assert not offending, f"binary data files tracked outside {BINARY_ALLOWED}: {offending}"


def test_the_readme_main_job_is_transfer_learned_and_runs_offline():
    """README command 1 trains AtomSets-V0 on a MEGNet embedding the package embeds (no ../shared, no network)."""
    import shlex

    from atomsets_tf.data.elements import embedded_embedding_table

    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("pip install") and "atomsets-tf fit" in ln)
    args = shlex.split(line.split("&&", 1)[1])
    assert args[:3] == ["atomsets-tf", "fit", "matbench_steels"]  # the embedded task
    assert args[args.index("--model") + 1] == "atomsets-v0"
    assert embedded_embedding_table(args[args.index("--element-features") + 1]) is not None
