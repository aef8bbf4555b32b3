""":func:`lazy_exports`: a package's names on first use (a package whose ``__init__`` must not import TensorFlow)."""

from __future__ import annotations

import importlib


def lazy_exports(module: str, exports: dict[str, str]):
    """A module ``__getattr__`` (PEP 562) that imports each name of ``exports`` (name -> the module defining it)
    on first use: ``__getattr__ = lazy_exports(__name__, _EXPORTS)``."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
