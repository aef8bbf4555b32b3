"""Reading PyTorch Lightning CGAT checkpoints (``.ckpt``) as numpy arrays, safely.

torch is an optional dependency, imported only here (:func:`read_checkpoint`). Checkpoints are
read with ``torch.load(..., weights_only=True)``: the restricted unpickler builds tensors and
plain containers only, so a crafted pickle cannot run code; anything it refuses, and any file
that is not a CGAT checkpoint, raises :class:`~atomsets_tf.errors.CheckpointError`. The
hyper-parameter containers that Lightning pickles (``AttributeDict``, ``argparse.Namespace``) are
allowed as plain data: a local ``dict`` subclass stands in for Lightning's ``AttributeDict``, so
Lightning need not be installed and no Lightning code runs.

This module knows no Keras: :meth:`CGAT.from_checkpoint <atomsets_tf.models.cgat.model.CGAT.from_checkpoint>`
turns what it reads into a model, and :mod:`~atomsets_tf.models.cgat.convert` into a ``.keras`` file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.errors import CheckpointError

_MODEL_PREFIX = "model."


class _AttributeDict(dict):
    """Stand-in for Lightning's ``AttributeDict`` (a dict subclass): unpickles as a plain ``dict``.

    ``torch.load(weights_only=True)`` instantiates an allowed class with ``cls.__new__(cls)`` and
    only fills exact dicts, so ``__new__`` hands back a plain dict.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


_SAFE_EXTRA_GLOBALS: list[Any] = [
    argparse.Namespace,
    (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_AttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
]


def _import_torch() -> Any:
    try:
        import torch  # optional dependency (pip install atomsets-tf[torch]): only to read .ckpt files
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading a PyTorch CGAT checkpoint needs torch: pip install 'atomsets-tf[torch]'"
        ) from exc
    return torch


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a CGAT Lightning checkpoint safely.

    Returns:
        ``(state_dict, hyper_parameters)``: the ``CGAtNet`` tensors as float32 numpy arrays with the
        ``model.`` prefix removed, plus ``mean`` / ``std`` (target normalisation) when present; and
        the hyper-parameters as a plain dict (empty if absent).

    Raises:
        CheckpointError: unreadable, refused by the safe unpickler, or not a CGAT checkpoint.
        FileNotFoundError: no such file.
    """
    torch = _import_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_SAFE_EXTRA_GLOBALS):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure of the loader means a bad checkpoint
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a loadable checkpoint (weights_only=True refused it or it is "
                              f"corrupt): {type(exc).__name__}: {msg}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        raw_sd, hparams = obj["state_dict"], obj.get("hyper_parameters") or {}
    elif isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        raw_sd, hparams = obj, {}
    else:
        raise CheckpointError(f"{path} holds no state_dict; not a CGAT checkpoint")
    if not isinstance(raw_sd, dict):
        raise CheckpointError(f"{path}: state_dict is a {type(raw_sd).__name__}, not a mapping")
    state: dict[str, np.ndarray] = {}
    for key, value in raw_sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is not a tensor")
        name = key[len(_MODEL_PREFIX):] if key.startswith(_MODEL_PREFIX) else key
        state[name] = value.detach().to(torch.float32).cpu().numpy()
    if "embedding.weight" not in state or "cry_pool.MH_M.fc_in.weight" not in state:
        raise CheckpointError(f"{path} is not a CGAT checkpoint (no CGAtNet embedding / cry_pool weights)")
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    return state, dict(hparams) if isinstance(hparams, dict) else {}
