"""The tutorial notebooks: stored without outputs, and each runs top to bottom in small mode."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
#: The one switch of every notebook; "small" is what CI runs.
SIZE_ENV = "ATOMSETS_TF_TUTORIAL_SIZE"
#: Data (in ../shared) that a notebook needs beyond the package's embedded matbench_steels.
NEEDS_SHARED = {
    "00_quickstart.ipynb": "pretrained/megnet/mp-2019.4.1/formation_energy.hdf5",
    "02_structures_and_pretrained_megnet.ipynb": "data/matbench/matbench_jdft2d.json.gz",
    "03_cgat_transfer_learning.ipynb": "data/structures/matbench_perovskites_val_subset.json.gz",
}
CELL_TIMEOUT_S = 600


def test_the_five_tutorials_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "00_quickstart.ipynb",
        "01_compositional_models.ipynb",
        "02_structures_and_pretrained_megnet.ipynb",
        "03_cgat_transfer_learning.ipynb",
        "04_distributed_training.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}, cell {k}: clear the outputs before committing "
                "(jupyter nbconvert --clear-output --inplace tutorials/*.ipynb)")
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert f'os.environ.get("{SIZE_ENV}", "full")' in code[0], "the first code cell must read the size switch"


@pytest.mark.slow
@pytest.mark.isolated  # the suite's process does not wait on the kernels: the notebooks run in the background lane
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    from atomsets_tf.utils.io import SHARED_ENV, shared_dir

    if path.name in NEEDS_SHARED:
        shared = shared_dir()
        if shared is None or not (shared / NEEDS_SHARED[path.name]).is_file():
            pytest.skip(f"{path.name} needs ../shared/{NEEDS_SHARED[path.name]}")
        monkeypatch.setenv(SHARED_ENV, str(shared))  # the copy below runs away from the checkout
    monkeypatch.setenv(SIZE_ENV, "small")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    work = tmp_path / "tutorials"
    work.mkdir()
    shutil.copy(path, work / path.name)

    nb = nbformat.read(work / path.name, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()
    print(f"{path.name}: {time.perf_counter() - start:.0f} s in small mode")

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors
    written = [p.relative_to(work) for p in work.rglob("*") if p.is_file() and p.name != path.name]
    assert written, "the notebook wrote nothing to its runs/ folder"
    outside = [str(p) for p in written if p.parts[0] != "runs"]
    assert not outside, f"{path.name} wrote outside tutorials/runs/: {outside}"
