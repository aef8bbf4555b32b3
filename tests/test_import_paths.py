"""The package's import paths: the documented names import from where they live, the layout's old paths are
gone (there were no releases to keep them for), and the core needs none of the optional extras."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

#: Paths of the layout before issue 12, kept as aliases until issue 23: none of them imports any more.
GONE = ("atomsets_tf.megnet", "atomsets_tf.cgat", "atomsets_tf.benchmark", "atomsets_tf.training.fit",
        "atomsets_tf.training.retrain", "atomsets_tf.training.features")


@pytest.mark.parametrize("old", GONE)
def test_the_old_alias_paths_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_readme_and_tutorial_names_import():
    from atomsets_tf.evaluation.protocol import run_benchmark  # noqa: F401
    from atomsets_tf.models import AtomSets, load_model, predict_table  # noqa: F401
    from atomsets_tf.models.atomsets.features import STRUCTURAL_MODELS
    from atomsets_tf.models.loading import describe, tap_table  # noqa: F401
    from atomsets_tf.models.megnet import MEGNet  # noqa: F401
    from atomsets_tf.training.strategy import get_strategy  # noqa: F401
    from atomsets_tf.workflows.fit import TrainingConfig, fit, make_splits  # noqa: F401
    from atomsets_tf.workflows.retrain import retrain  # noqa: F401

    assert STRUCTURAL_MODELS["atomsets-v1"] == ("V1", "atom")


def test_registry_imports_no_tensorflow():
    code = ("import sys; import atomsets_tf.models.registry as r; n = len(r.zoo()); list(r.FIT_MODELS); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print(n)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


#: The optional extras' top-level modules: the core must import, train and predict without any of them.
OPTIONAL_MODULES = ("ase", "sklearn", "matminer", "matplotlib", "matbench", "torch")


def test_the_core_works_without_the_optional_extras(tmp_path):
    """With every optional extra's import blocked: the core imports, fits and predicts (no plots, a note), and a
    bridge says which extra to install."""
    code = f"""
import sys, warnings
class Blocked:  # as if the extras were not installed: importing one of them raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL_MODULES!r}:
            raise ImportError(f"No module named {{name!r}} (blocked)")
sys.meta_path.insert(0, Blocked())
from atomsets_tf.workflows.fit import fit, TrainingConfig
from atomsets_tf.models.loading import predict_table
from atomsets_tf.evaluation.protocol import run_benchmark
from atomsets_tf.errors import MissingExtraError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fit("matbench_steels", model="atomsets", training=TrainingConfig(epochs=1, batch_size=64),
                 out_dir={str(tmp_path / "run")!r}, progress=False)
assert result.metrics["plots"] == {{}}, result.metrics["plots"]
assert any("atomsets-tf[plot]" in str(w.message) for w in caught), [str(w.message) for w in caught]
print(predict_table(result.model, ["Fe0.7Ni0.3"]).shape)
for bridge, extra in (("sklearn", "sklearn"), ("matminer", "matminer")):
    try:
        __import__("atomsets_tf.ext." + bridge)
    except MissingExtraError as exc:
        assert f"atomsets-tf[{{extra}}]" in str(exc), exc
    else:
        raise AssertionError(bridge + " imported without its extra")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "(1,)" in r.stdout
