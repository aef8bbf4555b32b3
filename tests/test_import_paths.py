"""The import paths the README and the tutorials used before the layout of issue 12 still work, as the
same objects as the new paths (aliases, not copies: Keras registers each class once)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

#: old path -> new path, for modules.
MOVED = {
    "atomsets_tf.megnet": "atomsets_tf.models.megnet",
    "atomsets_tf.megnet.model": "atomsets_tf.models.megnet.model",
    "atomsets_tf.cgat": "atomsets_tf.models.cgat",
    "atomsets_tf.cgat.data": "atomsets_tf.models.cgat.data",
    "atomsets_tf.cgat.model": "atomsets_tf.models.cgat.model",
    "atomsets_tf.benchmark": "atomsets_tf.evaluation",
    "atomsets_tf.benchmark.protocol": "atomsets_tf.evaluation.protocol",
    "atomsets_tf.benchmark.learning_curve": "atomsets_tf.evaluation.learning_curve",
    "atomsets_tf.training.fit": "atomsets_tf.workflows.fit",
    "atomsets_tf.training.retrain": "atomsets_tf.workflows.retrain",
    "atomsets_tf.training.features": "atomsets_tf.models.atomsets.features",
}


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_readme_and_tutorial_names_import():
    from atomsets_tf.benchmark.protocol import run_benchmark

    from atomsets_tf.evaluation.protocol import run_benchmark as new_run_benchmark
    from atomsets_tf.megnet import MEGNet
    from atomsets_tf.models import AtomSets, load_model, predict_table  # noqa: F401
    from atomsets_tf.models.loading import describe, tap_table  # noqa: F401
    from atomsets_tf.models.megnet import MEGNet as NewMEGNet
    from atomsets_tf.training.features import STRUCTURAL_MODELS
    from atomsets_tf.training.fit import TrainingConfig, fit, make_splits  # noqa: F401
    from atomsets_tf.training.retrain import retrain  # noqa: F401
    from atomsets_tf.training.strategy import get_strategy  # noqa: F401

    assert MEGNet is NewMEGNet and run_benchmark is new_run_benchmark
    assert STRUCTURAL_MODELS["atomsets-v1"] == ("V1", "atom")


def test_registry_imports_no_tensorflow():
    code = ("import sys; import atomsets_tf.models.registry as r; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print(len(r.ZOO))")
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
