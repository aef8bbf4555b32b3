"""Old import paths kept working after the package's layout changed (issue 12).

An alias module or package holds no code: it makes the old dotted name refer to
the module that now lives elsewhere, the same module object (so Keras' registered
classes exist once, and ``isinstance`` checks agree). ``docs/architecture.md``
lists the aliases; new code imports the new paths. :func:`lazy_exports` gives a package's names on first
use (a package whose ``__init__`` must not import TensorFlow).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType


def alias_module(old: str, new: str) -> ModuleType:
    """Make ``old`` the module ``new`` (call it from the alias module as ``alias_module(__name__, ...)``)."""
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module


def alias_package(old: str, new: str) -> ModuleType:
    """Make the package ``old`` and each of its submodules the package ``new`` and its submodules."""
    package = importlib.import_module(new)
    for info in pkgutil.iter_modules(package.__path__):
        sys.modules[f"{old}.{info.name}"] = importlib.import_module(f"{new}.{info.name}")
    sys.modules[old] = package
    return package


def lazy_exports(module: str, exports: dict[str, str]):
    """A module ``__getattr__`` (PEP 562) that imports each name of ``exports`` (name -> the module defining it)
    on first use: ``__getattr__ = lazy_exports(__name__, _EXPORTS)``."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
