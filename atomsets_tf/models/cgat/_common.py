"""Small helpers shared by the CGAT layers: activations, initialisers, torch weight maps.

The original CGAT is PyTorch; a few torch defaults differ from Keras 3 and are pinned here:

* ``nn.LeakyReLU()`` has slope 0.01 (Keras 3 ``LeakyReLU`` defaults to 0.3);
* ``nn.LayerNorm`` has epsilon 1e-5 (Keras 1e-3);
* ``nn.Linear`` / ``nn.Conv1d`` initialise weights and biases uniformly in ±1/sqrt(fan_in).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

#: Slope of torch's ``nn.LeakyReLU()`` default, used by every CGAT MLP.
LEAKY_SLOPE = 0.01
#: Epsilon of torch's ``nn.LayerNorm`` default, used in the hypernetwork-generated layers.
LAYER_NORM_EPS = 1e-5


def leaky_relu(x: tf.Tensor) -> tf.Tensor:
    """LeakyReLU with torch's default slope 0.01."""
    return tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE)


def layer_norm_no_params(x: tf.Tensor) -> tf.Tensor:
    """``nn.LayerNorm(elementwise_affine=False)`` over the last axis (biased variance, eps 1e-5)."""
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + LAYER_NORM_EPS)


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
