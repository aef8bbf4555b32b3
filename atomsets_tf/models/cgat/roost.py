"""The ROOST composition branch of CGAT (``roost_message.py``), in the padded element layout.

A crystal's composition graph has one node per distinct element (features: the 200-wide
matscholar embedding, weight: fractional abundance) and an edge for every ordered pair of
distinct elements. Here the pairs are formed densely, ``[B, E, E]``, and masked.
"""

from __future__ import annotations

from typing import Any

import keras

from atomsets_tf.models.cgat._common import Tensor, TorchWeight, leaky_relu, t_identity, t_linear, torch_uniform


@keras.saving.register_keras_serializable(package="atomsets_tf")
class FeedForward(keras.layers.Layer):
    """CGAT/ROOST ``SimpleNetwork``: [Linear, LeakyReLU(0.01)] per hidden layer, then a Linear.

    Args:
        input_dim: input width.
        output_dim: output width.
        hidden_dims: widths of the hidden layers.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        x: input features.

    Input shape:
        ``(..., input_dim)``.

    Output shape:
        ``(..., output_dim)``.

    Example:

    >>> import numpy as np
    >>> mlp = FeedForward(input_dim=6, output_dim=2, hidden_dims=[5])
    >>> tuple(mlp(np.ones((3, 4, 6), "float32")).shape)
    (3, 4, 2)
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_dims: list[int] | tuple[int, ...] = (256,),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.hidden_dims = [int(h) for h in hidden_dims]

    def build(self, input_shape: Any = None) -> None:
        dims = [self.input_dim, *self.hidden_dims]
        self.kernels, self.biases = [], []
        for i in range(len(dims) - 1):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(dims[i], dims[i + 1]),
                                                initializer=torch_uniform(dims[i])))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(dims[i + 1],),
                                               initializer=torch_uniform(dims[i])))
        self.kernel_out = self.add_weight(name="kernel_out", shape=(dims[-1], self.output_dim),
                                          initializer=torch_uniform(dims[-1]))
        self.bias_out = self.add_weight(name="bias_out", shape=(self.output_dim,), initializer=torch_uniform(dims[-1]))
        super().build(input_shape)

    def call(self, x: Tensor) -> Tensor:
        for k, b in zip(self.kernels, self.biases, strict=True):
            x = leaky_relu(keras.ops.tensordot(x, k, axes=1) + b)
        return keras.ops.tensordot(x, self.kernel_out, axes=1) + self.bias_out

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        out = []
        for i, (k, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            out += [TorchWeight(f"{prefix}fcs.{i}.weight", k, t_linear),
                    TorchWeight(f"{prefix}fcs.{i}.bias", b, t_identity)]
        out += [TorchWeight(prefix + "fc_out.weight", self.kernel_out, t_linear),
                TorchWeight(prefix + "fc_out.bias", self.bias_out, t_identity)]
        return out

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim, hidden_dims=list(self.hidden_dims))
        return cfg


def weighted_softmax(gate: Tensor, weights: Tensor, mask: Tensor, power: Tensor) -> Tensor:
    """ROOST ``WeightedAttention`` coefficients over the last axis.

    ``a_j = w_j**pow * exp(g_j - max g) / (sum_j w_j**pow * exp(g_j - max g) + 1e-13)``, with the
    max over the unmasked entries; masked entries get 0 (an empty row gives all zeros).

    Args:
        gate: ``[..., M]`` gate logits.
        weights: ``[..., M]`` positive weights (fractional abundances); ignored where masked.
        mask: ``[..., M]`` bool.
        power: scalar (shape ``(1,)``) learnt exponent.
    """
    neg_inf = keras.ops.convert_to_tensor(-float("inf"), gate.dtype)
    gmax = keras.ops.max(keras.ops.where(mask, gate, neg_inf), axis=-1, keepdims=True)
    gmax = keras.ops.where(keras.ops.isfinite(gmax), gmax, keras.ops.zeros_like(gmax))
    shifted = keras.ops.where(mask, gate - gmax, neg_inf)
    safe_w = keras.ops.where(mask, weights, keras.ops.ones_like(weights))
    g = keras.ops.where(mask, keras.ops.power(safe_w, power) * keras.ops.exp(shifted), keras.ops.zeros_like(gate))
    return g / (keras.ops.sum(g, axis=-1, keepdims=True) + 1e-13)


@keras.saving.register_keras_serializable(package="atomsets_tf")
class RoostMessageLayer(keras.layers.Layer):
    """One ROOST message layer (one attention head, residual).

    For element ``i`` and every other element ``j`` of the same crystal, the pair input is
    ``[h_i, h_j]``; gate MLP (2F->256->1) and message MLP (2F->256->F) with LeakyReLU(0.01); the
    gates are combined by :func:`weighted_softmax` with the abundance of ``j``, raised to the
    learnt ``pow``; output ``h_i + sum_j a_ij m_ij``. An element without partners (elemental
    crystal) passes unchanged. This fixes golden README surprise 11: the original crashes when
    such a crystal is the last of a batch (its scatter output is one row short).

    Args:
        fea_len: element feature width F.
        hidden: hidden width of the gate and message MLPs.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        h: element features of each crystal (padded to E elements).
        weights: fractional abundance of each element.
        mask: True for the real elements, False for padding.

    Input shape:
        ``h``: ``(B, E, fea_len)``; ``weights``, ``mask``: ``(B, E)``.

    Output shape:
        ``(B, E, fea_len)``.

    Example:

    >>> import numpy as np
    >>> layer = RoostMessageLayer(fea_len=4, hidden=8)
    >>> h = np.ones((2, 3, 4), "float32")
    >>> weights = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], "float32")
    >>> out = layer(h, weights, weights > 0)
    >>> tuple(out.shape)
    (2, 3, 4)
    >>> bool(np.allclose(out[1], h[1]))  # an elemental crystal passes unchanged
    True
    """

    def __init__(self, fea_len: int, hidden: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fea_len = int(fea_len)
        self.hidden = int(hidden)
        self.gate_nn = FeedForward(2 * self.fea_len, 1, [self.hidden], name="gate_nn")
        self.message_nn = FeedForward(2 * self.fea_len, self.fea_len, [self.hidden], name="message_nn")

    def build(self, input_shape: Any = None) -> None:
        self.gate_nn.build(None)
        self.message_nn.build(None)
        self.power = self.add_weight(name="pow", shape=(1,), initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, h: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
        b, n = keras.ops.shape(h)[0], keras.ops.shape(h)[1]
        h_self = keras.ops.broadcast_to(h[:, :, None, :], (b, n, n, self.fea_len))
        h_nbr = keras.ops.broadcast_to(h[:, None, :, :], (b, n, n, self.fea_len))
        pair = keras.ops.concatenate([h_self, h_nbr], axis=-1)  # [B, E, E, 2F]
        not_self = keras.ops.logical_not(keras.ops.eye(n, dtype="bool"))
        pair_mask = mask[:, :, None] & mask[:, None, :] & not_self[None]
        gate = self.gate_nn(pair)[..., 0]
        w_nbr = keras.ops.broadcast_to(weights[:, None, :], keras.ops.shape(gate))
        a = weighted_softmax(gate, w_nbr, pair_mask, self.power)
        msg = self.message_nn(pair)
        return h + keras.ops.sum(a[..., None] * msg, axis=2)

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}pooling.0.{pow, gate_nn.*, message_nn.*}``."""
        p = prefix + "pooling.0."
        return ([TorchWeight(p + "pow", self.power, t_identity)]
                + self.gate_nn.torch_weights(p + "gate_nn.") + self.message_nn.torch_weights(p + "message_nn."))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(fea_len=self.fea_len, hidden=self.hidden)
        return cfg


@keras.saving.register_keras_serializable(package="atomsets_tf")
class RoostEncoder(keras.layers.Layer):
    """ROOST composition vector: embedding, message layers, weighted attention pooling.

    * embedding: Linear(orig -> F-1) with bias, then the abundance is appended as the F-th feature;
    * ``n_graph`` :class:`RoostMessageLayer`;
    * crystal pool: gate MLP (F->256->1), :func:`weighted_softmax` with the abundances and a learnt
      power, identity message: ``sum_i a_i h_i``.

    Args:
        orig_fea_len: width of the input element embedding (matscholar: 200).
        fea_len: element feature width F.
        n_graph: number of message layers.
        hidden: hidden width of the gate and message MLPs.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        elem_fea: input embedding of each element of each crystal (padded to E elements).
        elem_weights: fractional abundance of each element (0 = padding).
        return_taps: also return a dict with ``roost_embed_out`` ``(B, E, F-1)`` and
            ``roost_elem_fea_k`` ``(B, E, F)`` (k = 1..n_graph).

    Input shape:
        ``elem_fea``: ``(B, E, orig_fea_len)``; ``elem_weights``: ``(B, E)``.

    Output shape:
        ``(B, fea_len)`` (and the taps with ``return_taps``).

    Example:

    >>> import numpy as np
    >>> roost = RoostEncoder(orig_fea_len=6, fea_len=4, n_graph=1, hidden=8)
    >>> elem_fea = np.ones((2, 3, 6), "float32")
    >>> elem_weights = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], "float32")
    >>> tuple(roost(elem_fea, elem_weights).shape)
    (2, 4)
    """

    def __init__(self, orig_fea_len: int = 200, fea_len: int = 128, n_graph: int = 3, hidden: int = 256,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.orig_fea_len = int(orig_fea_len)
        self.fea_len = int(fea_len)
        self.n_graph = int(n_graph)
        self.hidden = int(hidden)
        self.message_layers = [RoostMessageLayer(self.fea_len, self.hidden, name=f"message_{k}")
                               for k in range(self.n_graph)]
        self.pool_gate = FeedForward(self.fea_len, 1, [self.hidden], name="pool_gate_nn")

    def build(self, input_shape: Any = None) -> None:
        self.embed_kernel = self.add_weight(name="embed_kernel", shape=(self.orig_fea_len, self.fea_len - 1),
                                            initializer=torch_uniform(self.orig_fea_len))
        self.embed_bias = self.add_weight(name="embed_bias", shape=(self.fea_len - 1,),
                                          initializer=torch_uniform(self.orig_fea_len))
        for layer in self.message_layers:
            layer.build(None)
        self.pool_gate.build(None)
        self.pool_power = self.add_weight(name="pool_pow", shape=(1,),
                                          initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, elem_fea: Tensor, elem_weights: Tensor,
             return_taps: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        mask = elem_weights > 0
        w = keras.ops.cast(elem_weights, elem_fea.dtype)
        emb = keras.ops.tensordot(elem_fea, self.embed_kernel, axes=1) + self.embed_bias
        h = keras.ops.concatenate([emb, w[..., None]], axis=-1)
        taps = {"roost_embed_out": emb}
        for k, layer in enumerate(self.message_layers):
            h = layer(h, w, mask)
            taps[f"roost_elem_fea_{k + 1}"] = h
        gate = self.pool_gate(h)[..., 0]
        a = weighted_softmax(gate, w, mask, self.pool_power)
        out = keras.ops.sum(a[..., None] * h, axis=1)
        if return_taps:
            return out, taps
        return out

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}embedding.*``, ``{prefix}graphs.k.*``, ``{prefix}cry_pool.0.*``."""
        out = [TorchWeight(prefix + "embedding.weight", self.embed_kernel, t_linear),
               TorchWeight(prefix + "embedding.bias", self.embed_bias, t_identity)]
        for k, layer in enumerate(self.message_layers):
            out += layer.torch_weights(f"{prefix}graphs.{k}.")
        out += [TorchWeight(prefix + "cry_pool.0.pow", self.pool_power, t_identity)]
        out += self.pool_gate.torch_weights(prefix + "cry_pool.0.gate_nn.")
        return out

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(orig_fea_len=self.orig_fea_len, fea_len=self.fea_len, n_graph=self.n_graph, hidden=self.hidden)
        return cfg
