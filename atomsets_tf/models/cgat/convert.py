"""PyTorch Lightning CGAT checkpoints (``.ckpt``) -> the Keras :class:`~atomsets_tf.models.cgat.model.CGAT`.

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
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

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
        import torch
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


def _count(state: dict[str, np.ndarray], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def config_from_state_dict(state: dict[str, np.ndarray], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """Infer :class:`~atomsets_tf.models.cgat.model.CGAT` keyword arguments from a ``CGAtNet`` state_dict.

    Raises:
        CheckpointError: missing tensors, or a CGAT variant the port does not implement
            (``update_edges=False``, hypernetwork edge updates ``no_hyper=False``).
    """
    try:
        emb = state["embedding.weight"]
        f, orig = int(emb.shape[0]), int(emb.shape[1])
        n_ranks, fe = (int(s) for s in state["nbr_embedding.weight"].shape)
        if "graphs.0.Node.MH_A.fc_in.weight" not in state:
            raise CheckpointError("CGAT checkpoint without edge updates (update_edges=False) is not supported: the "
                                  "original's constructor passes that variant's arguments in the wrong positions")
        if any(".Edge.Pooling_NN.Hyper." in k for k in state):
            raise CheckpointError("CGAT checkpoint with hypernetwork edge updates (no_hyper=False) is not supported")
        n_graph = _count(state, r"^graphs\.(\d+)\.Node\.MH_A\.fc_in\.weight$")
        heads = int(state["cry_pool.MH_M.fc_in.weight"].shape[0]) // f
        vector_attention = int(state["graphs.0.Node.MH_A.fc_out.weight"].shape[0]) == heads * f
        global_vector_attention = int(state["cry_pool.MH_A.fc_out.weight"].shape[0]) == heads * f
        n_hidden = _count(state, r"^output_nn\.fcs\.(\d+)\.weight$")
        out_hidden = [int(state[f"output_nn.fcs.{i}.weight"].shape[0]) for i in range(n_hidden)]
        head_in = int(state["output_nn.fcs.0.weight"].shape[1])
        n_roost = _count(state, r"^roost\.graphs\.(\d+)\.pooling\.0\.pow$")
    except KeyError as exc:
        raise CheckpointError(f"CGAT state_dict lacks {exc}") from None
    if head_in not in (f, f * heads):
        raise CheckpointError(f"output head input width {head_in} matches neither {f} nor {f * heads}")
    cfg = dict(
        orig_elem_fea_len=orig, elem_fea_len=f, n_graph=n_graph, nbr_embedding_size=fe,
        neighbor_number=n_ranks - 1, msg_heads=heads, n_graph_roost=n_roost,
        mean_pooling=(head_in == f and heads > 1), rezero="output_nn.rezeros.0.alpha" in state,
        vector_attention=vector_attention, global_vector_attention=global_vector_attention, out_hidden=out_hidden,
    )
    if hparams:
        checks = {"atom_fea_len": f, "n_graph": n_graph, "msg_heads": heads, "n_graph_roost": n_roost,
                  "max_nbr": n_ranks - 1}
        for name, value in checks.items():
            if name in hparams and hparams[name] is not None and int(hparams[name]) != value:
                raise CheckpointError(f"checkpoint hyper-parameter {name}={hparams[name]} does not match its "
                                      f"weights ({value})")
    return cfg


def load_state_dict(model: Any, state: dict[str, np.ndarray], strict: bool = True) -> None:
    """Assign a numpy ``CGAtNet`` state_dict to a :class:`~atomsets_tf.models.cgat.model.CGAT`.

    ``mean`` / ``std`` entries (Lightning's normalisation) set the stored target normalisation.

    Raises:
        CheckpointError: a missing tensor, a shape mismatch, or (``strict``) an unknown key.
    """
    from atomsets_tf.models.cgat.model import IGNORED_TORCH_KEYS

    buffers: dict[int, np.ndarray] = {}
    variables: dict[int, Any] = {}
    used = set()
    missing = []
    for tw in model.torch_weights():
        vid = id(tw.variable)
        if vid not in buffers:
            buffers[vid] = np.array(tw.variable.numpy(), dtype=np.float32)
            variables[vid] = tw.variable
        if tw.key not in state:
            missing.append(tw.key)
            continue
        value = np.asarray(tw.transform(state[tw.key]), dtype=np.float32)
        target = buffers[vid] if tw.index is None else buffers[vid][tw.index]
        if value.shape != target.shape:
            raise CheckpointError(f"{tw.key}: shape {state[tw.key].shape} does not fit the model "
                                  f"({target.shape} after conversion, got {value.shape})")
        if tw.index is None:
            buffers[vid] = value
        else:
            buffers[vid][tw.index] = value
        used.add(tw.key)
    if missing:
        raise CheckpointError(f"CGAT state_dict lacks {len(missing)} tensors, e.g. {missing[:3]}")
    extra = [k for k in state if k not in used and k not in ("mean", "std") and not IGNORED_TORCH_KEYS.match(k)]
    if strict and extra:
        raise CheckpointError(f"CGAT state_dict has {len(extra)} unexpected tensors, e.g. {extra[:3]}")
    for vid, var in variables.items():
        var.assign(buffers[vid])
    if "mean" in state and "std" in state:
        model.target_mean.assign(float(np.asarray(state["mean"]).reshape(-1)[0]))
        model.target_std.assign(float(np.asarray(state["std"]).reshape(-1)[0]))


def export_state_dict(model: Any, include_normalisation: bool = True) -> dict[str, np.ndarray]:
    """The Keras model's weights as a numpy ``CGAtNet`` state_dict (torch names and layouts).

    The discarded edge-attention tensors (``graphs.k.Edge.MH_A/MH_M``) are not part of the port and
    are absent, so loading the result into the original needs ``strict=False``. With
    ``include_normalisation``, ``mean`` and ``std`` (shape ``(1,)``) are added as Lightning stores them.
    """
    state: dict[str, np.ndarray] = {}
    for tw in model.torch_weights():
        value = np.asarray(tw.variable.numpy())
        value = value if tw.index is None else value[tw.index]
        state[tw.key] = np.ascontiguousarray(tw.transform.inverse(value), dtype=np.float32)
    if include_normalisation:
        state["mean"] = np.asarray([float(model.target_mean.numpy())], np.float32)
        state["std"] = np.asarray([float(model.target_std.numpy())], np.float32)
    return state


def model_from_state_dict(state: dict[str, np.ndarray], hparams: dict[str, Any] | None = None,
                          **overrides: Any) -> Any:
    """Build a :class:`~atomsets_tf.models.cgat.model.CGAT` from a numpy ``CGAtNet`` state_dict and load it."""
    from atomsets_tf.models.cgat.model import CGAT

    cfg = config_from_state_dict(state, hparams)
    cfg.update(overrides)
    model = CGAT(**cfg)
    load_state_dict(model, state)
    return model


def model_from_checkpoint(path: str | os.PathLike, embedding: Any | None = None) -> Any:
    """Read a Lightning ``.ckpt`` (safely) into a :class:`~atomsets_tf.models.cgat.model.CGAT`.

    With ``embedding`` (an :class:`~atomsets_tf.models.cgat.data.ElementEmbedding`), its table is stored in
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
    from atomsets_tf.models.cgat.data import load_matscholar_embedding

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
