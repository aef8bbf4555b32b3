"""PyTorch Lightning CGAT checkpoints (``.ckpt``) -> the Keras :class:`~atomsets_tf.cgat.model.CGAT`.

torch is an optional dependency, imported only here. Checkpoints are read with
``torch.load(..., weights_only=True)``: the restricted unpickler builds tensors and plain
containers only, so a crafted pickle cannot run code; anything it refuses, and any file that is
not a CGAT checkpoint, raises :class:`~atomsets_tf.errors.CheckpointError`. The hyper-parameter
containers that Lightning pickles (``AttributeDict``, ``argparse.Namespace``) are allowed as
plain data: a local ``dict`` subclass stands in for Lightning's ``AttributeDict``, so Lightning
need not be installed and no Lightning code runs.

The model configuration is inferred from the state_dict's shapes (the hyper-parameters are only
cross-checked), and every Keras variable must receive a tensor of the right shape. The weights of
the original's discarded edge attention (``graphs.k.Edge.MH_A/MH_M``, golden README surprise 4)
are accepted and ignored.

The torch-free part (numpy state_dict <-> model: :func:`config_from_state_dict`,
:func:`load_state_dict`, :func:`export_state_dict`) lives in :mod:`atomsets_tf.cgat._common` and
is re-exported here. Imports go one way, this module -> :mod:`~atomsets_tf.cgat.model` ->
``_common``; the model reaches this module only inside ``CGAT.from_checkpoint`` (the torch reader).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.cgat._common import (  # noqa: F401 - the torch-free state_dict mapping, re-exported here
    config_from_state_dict,
    export_state_dict,
    load_state_dict,
)
from atomsets_tf.cgat.data import ElementEmbedding, load_matscholar_embedding
from atomsets_tf.cgat.model import CGAT
from atomsets_tf.errors import CheckpointError, OutputPathError

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


def model_from_state_dict(state: dict[str, np.ndarray], hparams: dict[str, Any] | None = None,
                          **overrides: Any) -> CGAT:
    """Build a :class:`~atomsets_tf.cgat.model.CGAT` from a numpy ``CGAtNet`` state_dict and load it."""
    return CGAT.from_state_dict(state, hparams, **overrides)


def model_from_checkpoint(path: str | os.PathLike, embedding: ElementEmbedding | None = None) -> CGAT:
    """Read a Lightning ``.ckpt`` (safely) into a :class:`~atomsets_tf.cgat.model.CGAT`.

    With ``embedding`` (an :class:`~atomsets_tf.cgat.data.ElementEmbedding`), its table is stored in
    the model so that the saved ``.keras`` file is self-contained for structures.
    """
    state, hparams = read_checkpoint(path)
    overrides: dict[str, Any] = {}
    if embedding is not None:
        overrides["elements"] = list(embedding.symbols)
    model = model_from_state_dict(state, hparams, **overrides)
    if embedding is not None:
        model.set_element_embedding(embedding)
    return model


def convert_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike,
                       embedding_path: str | os.PathLike | None = None) -> Path:
    """``atomsets-tf convert CKPT -o model.keras``: write a CGAT checkpoint as a ``.keras`` file.

    The matscholar embedding (``embedding_path`` or its default location, if found) is stored in
    the model so that it can predict from structures on its own.

    Raises:
        OutputPathError: ``out_path`` does not end in ``.keras`` (checked before anything is read).
        CheckpointError: ``ckpt_path`` is not a loadable CGAT checkpoint.
        FileNotFoundError: no such checkpoint (or embedding, when ``embedding_path`` is given).
    """
    out_path = Path(out_path)
    if out_path.suffix != ".keras":
        raise OutputPathError(f"the output must end in .keras (Keras' model file format), got {out_path}")
    try:
        embedding = load_matscholar_embedding(embedding_path)
    except FileNotFoundError:
        if embedding_path is not None:
            raise
        embedding = None
    model = model_from_checkpoint(ckpt_path, embedding=embedding)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".convert.") as tmpdir:
        tmp = Path(tmpdir) / out_path.name
        model.save(tmp)
        os.replace(tmp, out_path)
    return out_path
