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
