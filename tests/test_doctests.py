"""Every docstring Example in the package runs (the Keras-style docstrings of the public layers and models)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import atomsets_tf
from atomsets_tf.errors import MissingExtraError


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(atomsets_tf.__path__, "atomsets_tf."):
        if info.name.endswith("cli"):
            continue
        try:
            module = importlib.import_module(info.name)
        except MissingExtraError:  # a bridge (atomsets_tf.ext.*) whose optional extra is not installed
            continue
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return names


MODULES = modules_with_examples()


def test_the_public_layers_and_models_have_examples():
    for name in ("atomsets_tf.layers.weighted_set2set", "atomsets_tf.layers.weighted_mean",
                 "atomsets_tf.models.atomsets.model", "atomsets_tf.models.megnet.model"):
        assert name in MODULES, f"{name} has no docstring example"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
