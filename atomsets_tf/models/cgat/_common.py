"""Small helpers shared by the CGAT layers: activations, initialisers, torch weight maps.

Also the torch-free mapping between a numpy ``CGAtNet`` state_dict and a CGAT model
(:func:`config_from_state_dict`, :func:`load_state_dict`, :func:`export_state_dict`): the model
uses it for ``from_state_dict``; :mod:`~atomsets_tf.models.cgat.convert` adds the torch ``.ckpt`` reader.

The original CGAT is PyTorch; a few torch defaults differ from Keras 3 and are pinned here:

* ``nn.LeakyReLU()`` has slope 0.01 (Keras 3 ``LeakyReLU`` defaults to 0.3);
* ``nn.LayerNorm`` has epsilon 1e-5 (Keras 1e-3);
* ``nn.Linear`` / ``nn.Conv1d`` initialise weights and biases uniformly in ±1/sqrt(fan_in).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from atomsets_tf.errors import CheckpointError

#: A backend tensor, as ``keras.ops`` takes and returns it (a ``tf.Tensor`` with this package's backend).
Tensor = Any

#: Slope of torch's ``nn.LeakyReLU()`` default, used by every CGAT MLP.
LEAKY_SLOPE = 0.01
#: Epsilon of torch's ``nn.LayerNorm`` default, used in the hypernetwork-generated layers.
LAYER_NORM_EPS = 1e-5


def leaky_relu(x: Tensor) -> Tensor:
    """LeakyReLU with torch's default slope 0.01."""
    return keras.ops.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def layer_norm_no_params(x: Tensor) -> Tensor:
    """``nn.LayerNorm(elementwise_affine=False)`` over the last axis (biased variance, eps 1e-5)."""
    mean, var = keras.ops.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * keras.ops.rsqrt(var + LAYER_NORM_EPS)


def torch_uniform(fan_in: int) -> keras.initializers.Initializer:
    """torch's default Linear/Conv1d initialisation: uniform in ±1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(max(int(fan_in), 1))
    return keras.initializers.RandomUniform(-bound, bound)


# ---------------------------------------------------------------------------
# torch state_dict <-> Keras variables
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchWeight:
    """One tensor of the PyTorch ``CGAtNet`` state_dict and where it lives in the Keras model.

    Attributes:
        key: the PyTorch state_dict key (without the Lightning ``model.`` prefix).
        variable: the Keras variable that holds it.
        transform: maps the torch array to the Keras layout (transposes, reshapes;
            ``transform.inverse`` maps back); it is linear, so it also maps a torch gradient.
        index: if not ``None``, the torch tensor is ``variable[index]`` (stacked variables).
    """

    key: str
    variable: keras.Variable
    transform: Transform
    index: int | None = None


class Transform:
    """A linear layout change torch -> Keras (``__call__``) with its inverse (``inverse``)."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], inverse: Callable[[np.ndarray], np.ndarray],
                 name: str) -> None:
        self._forward = forward
        self.inverse = inverse
        self.name = name

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return self._forward(np.asarray(w))

    def __repr__(self) -> str:
        return f"Transform({self.name})"


#: Same layout in torch and Keras (biases, scalars, embedding tables).
t_identity = Transform(lambda w: w, lambda w: np.asarray(w), "identity")
#: ``nn.Linear.weight`` ``(out, in)`` -> Keras kernel ``(in, out)``.
t_linear = Transform(lambda w: w.T, lambda w: np.asarray(w).T, "linear")
#: Grouped 1x1 ``Conv1d`` on a repeated input, ``(heads*hidden, in, 1)`` -> ``(in, heads*hidden)``.
t_conv_in = Transform(lambda w: w[:, :, 0].T, lambda w: np.asarray(w).T[:, :, None], "conv_in")


def t_conv_out(heads: int) -> Transform:
    """Grouped 1x1 ``Conv1d`` ``(heads*out, hidden, 1)`` -> per-head kernels ``(heads, hidden, out)``."""
    return Transform(
        lambda w: w[:, :, 0].reshape(heads, -1, w.shape[1]).transpose(0, 2, 1),
        lambda w: np.asarray(w).transpose(0, 2, 1).reshape(-1, np.shape(w)[1])[:, :, None],
        f"conv_out[{heads}]",
    )


def t_conv_out_bias(heads: int) -> Transform:
    """Grouped ``Conv1d`` bias ``(heads*out,)`` -> ``(heads, out)``."""
    return Transform(lambda b: b.reshape(heads, -1), lambda b: np.asarray(b).reshape(-1), f"conv_out_bias[{heads}]")


# ---------------------------------------------------------------------------
# numpy CGAtNet state_dict <-> a CGAT model (torch-free; convert.py reads the .ckpt with torch)
# ---------------------------------------------------------------------------

#: torch state_dict keys the port does not use (the discarded edge attention, surprise 4).
IGNORED_TORCH_KEYS = re.compile(r"^graphs\.\d+\.Edge\.MH_[AM]\.")


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
