"""Multi-head MLPs, the node attention update and the edge update of CGAT.

Edges are held as a flat list of the *real* atoms' neighbour lists: atom ``r`` (the centre) has
``K`` neighbours ``recv[r, k]`` with distance-shell rank ``rank[r, k]``. The padded batch layout
of the package is turned into this compact form inside :class:`~atomsets_tf.models.cgat.model.CGAT`.
"""

from __future__ import annotations

from typing import Any

import keras

from atomsets_tf.models.cgat._common import (
    Tensor,
    TorchWeight,
    leaky_relu,
    t_conv_in,
    t_conv_out,
    t_conv_out_bias,
    t_identity,
    t_linear,
    torch_uniform,
)
from atomsets_tf.models.cgat.hypernet import HyperNetworkUpdate


@keras.saving.register_keras_serializable(package="atomsets_tf")
class MultiHeadMLP(keras.layers.Layer):
    """``heads`` independent one-hidden-layer MLPs on the same input (CGAT ``MultiHeadNetwork``).

    The original implements them as grouped 1x1 ``Conv1d`` layers on the input repeated ``heads``
    times (golden README, surprise 13). Because every head sees the same input, the first layer is
    one dense layer with ``heads*hidden`` outputs; the second is a per-head (block-diagonal)
    product. Activation: LeakyReLU(0.01) after the hidden layer, none after the output.

    Args:
        input_dim: input width.
        hidden_dim: hidden width of each head.
        output_dim: output width of each head.
        heads: number of heads.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        x: input features (the same for every head).

    Input shape:
        ``(..., input_dim)``.

    Output shape:
        ``(..., heads, output_dim)``.

    Example:

    >>> import numpy as np
    >>> mlp = MultiHeadMLP(input_dim=6, hidden_dim=4, output_dim=3, heads=2)
    >>> tuple(mlp(np.ones((5, 6), "float32")).shape)
    (5, 2, 3)
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.heads = int(heads)

    def build(self, input_shape: Any = None) -> None:
        h, k = self.heads, self.hidden_dim
        self.kernel_in = self.add_weight(
            name="kernel_in", shape=(self.input_dim, h * k), initializer=torch_uniform(self.input_dim)
        )
        self.bias_in = self.add_weight(name="bias_in", shape=(h * k,), initializer=torch_uniform(self.input_dim))
        self.kernel_out = self.add_weight(
            name="kernel_out", shape=(h, k, self.output_dim), initializer=torch_uniform(k)
        )
        self.bias_out = self.add_weight(name="bias_out", shape=(h, self.output_dim), initializer=torch_uniform(k))
        super().build(input_shape)

    def hidden_to_output(self, pre: Tensor) -> Tensor:
        """Second half of the MLP: ``[..., heads*hidden]`` pre-activations -> ``[..., heads, output_dim]``."""
        lead = keras.ops.shape(pre)[:-1]
        # per-head product as one batched matmul over heads ([H, M, hidden] x [H, hidden, out]);
        # cheaper to differentiate than the equivalent einsum
        hid = leaky_relu(keras.ops.transpose(keras.ops.reshape(pre, (-1, self.heads, self.hidden_dim)), (1, 0, 2)))
        out = keras.ops.transpose(keras.ops.matmul(hid, self.kernel_out), (1, 0, 2)) + self.bias_out
        return keras.ops.reshape(out, (*lead, self.heads, self.output_dim))

    def call(self, x: Tensor) -> Tensor:
        pre = keras.ops.tensordot(x, self.kernel_in, axes=1) + self.bias_in
        return self.hidden_to_output(pre)

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}fc_in.*`` / ``{prefix}fc_out.*`` of the PyTorch module."""
        return [
            TorchWeight(prefix + "fc_in.weight", self.kernel_in, t_conv_in),
            TorchWeight(prefix + "fc_in.bias", self.bias_in, t_identity),
            TorchWeight(prefix + "fc_out.weight", self.kernel_out, t_conv_out(self.heads)),
            TorchWeight(prefix + "fc_out.bias", self.bias_out, t_conv_out_bias(self.heads)),
        ]

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, hidden_dim=self.hidden_dim, output_dim=self.output_dim, heads=self.heads)
        return cfg


def segment_softmax_aggregate(
    logits: Tensor, messages: Tensor, segment_ids: Tensor, num_segments: Tensor
) -> Tensor:
    """``sum_e softmax_segment(logits)_e * messages_e`` per segment (torch_geometric ``softmax``).

    The softmax runs over all rows with the same segment id, independently for every trailing
    channel (vector attention); the max shift is detached as in torch_geometric, and ``1e-16`` is
    added to the denominator as there. Segments without rows give 0.

    Args:
        logits: ``[M, ...]`` attention logits (trailing axes broadcast against ``messages``).
        messages: ``[M, ...]``.
        segment_ids: ``[M]`` int, in ``[0, num_segments)``.
        num_segments: number of segments.

    Returns:
        ``[num_segments, ...]``.
    """
    shift = keras.ops.segment_max(keras.ops.stop_gradient(logits), segment_ids, num_segments)
    e = keras.ops.exp(logits - keras.ops.take(shift, segment_ids, axis=0))
    den = keras.ops.segment_sum(e, segment_ids, num_segments) + 1e-16
    alpha = e / keras.ops.take(den, segment_ids, axis=0)
    return keras.ops.segment_sum(alpha * messages, segment_ids, num_segments)


@keras.saving.register_keras_serializable(package="atomsets_tf")
class NodeAttentionUpdate(keras.layers.Layer):
    """One CGAT node message-passing step (``GATConvNodes`` + its hypernetwork update).

    For every edge (centre atom ``c``, neighbour ``r`` among the centre's 24 nearest, rank ``t``)
    the input is ``[x_r, e_t, x_c]``. Messages are aggregated at the **neighbour** ``r``
    (torch_geometric source->target flow, golden README surprise 5): an atom receives from the
    atoms that list it among their nearest neighbours. Per receiving atom, head and channel the
    attention logits are soft-maxed, the weighted messages summed, the heads averaged, and the
    result fed through the hypernetwork-generated network (:class:`HyperNetworkUpdate`). The
    returned update is added to the node features by the caller.

    The first layer of both multi-head MLPs is split exactly into per-atom, per-rank and per-atom
    parts (``W [x_r, e, x_c] = W_r x_r + W_e e + W_c x_c``): the edge embeddings depend only on the
    rank (surprise 4), so the edge part is a ``[n_ranks, heads*hidden]`` table.

    Args:
        fea_len: node feature width F.
        edge_len: edge feature width Fe.
        heads: attention heads.
        first: first step (``H_Net_0``: the hypernetwork reads the current node features) or later
            (``H_Net``: it reads ``damping*x0 + (1-damping)*aggregate``).
        vector_attention: one attention coefficient per channel (True) or per head (False).
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        x: node features of the R real atoms of the batch.
        x0: node features after the element embedding.
        edge_table: edge embedding of every rank.
        recv: int, compact index of each centre's K neighbours.
        rank: int, distance-shell rank of each edge, in ``[0, n_ranks)``.
        segments: optional int aggregation index of each edge (see :meth:`aggregate`).
        return_aggregate: also return the head-averaged message.

    Input shape:
        ``x``, ``x0``: ``(R, fea_len)``; ``edge_table``: ``(n_ranks, edge_len)``;
        ``recv``, ``rank``, ``segments``: ``(R, K)``.

    Output shape:
        ``(R, fea_len)``: the node update (and, with ``return_aggregate``, the ``(R, fea_len)``
        head-averaged message).

    Example:

    >>> import numpy as np
    >>> layer = NodeAttentionUpdate(fea_len=4, edge_len=3, heads=2, first=True)
    >>> x = np.ones((3, 4), "float32")
    >>> table = np.ones((3, 3), "float32")  # 3 ranks
    >>> recv = np.array([[1, 2], [0, 2], [0, 1]], "int32")  # every atom lists the other two
    >>> rank = np.array([[1, 2], [1, 2], [1, 2]], "int32")
    >>> tuple(layer(x, x, table, recv, rank).shape)
    (3, 4)
    """

    def __init__(
        self,
        fea_len: int,
        edge_len: int = 128,
        heads: int = 5,
        first: bool = False,
        vector_attention: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fea_len = int(fea_len)
        self.edge_len = int(edge_len)
        self.heads = int(heads)
        self.first = bool(first)
        self.vector_attention = bool(vector_attention)
        in_dim = 2 * self.fea_len + self.edge_len
        hidden = int(in_dim / 1.5)
        self.attention = MultiHeadMLP(in_dim, hidden, self.fea_len if self.vector_attention else 1, self.heads,
                                      name="attention")
        self.message = MultiHeadMLP(in_dim, hidden, self.fea_len, self.heads, name="message")
        self.hyper = HyperNetworkUpdate(self.fea_len, first=self.first, name="hyper")

    def build(self, input_shape: Any = None) -> None:
        in_dim = 2 * self.fea_len + self.edge_len
        self.attention.build((None, in_dim))
        self.message.build((None, in_dim))
        self.hyper.build(None)
        super().build(input_shape)

    def aggregate(self, x: Tensor, edge_table: Tensor, recv: Tensor, rank: Tensor,
                  segments: Tensor | None = None) -> Tensor:
        """Head-averaged attention-weighted sum of messages at each receiving atom, ``[R, F]``.

        ``segments`` (optional, ``[R, K]``): aggregation index of each edge when it differs from
        ``recv``; the value ``R`` marks an edge to drop (static-shape mode, padding atoms).
        """
        f, fe = self.fea_len, self.edge_len
        kernel = keras.ops.concatenate([self.attention.kernel_in, self.message.kernel_in], axis=1)  # [2F+Fe, 2*H*hid]
        bias = keras.ops.concatenate([self.attention.bias_in, self.message.bias_in], axis=0)
        p_recv = keras.ops.matmul(x, kernel[:f])
        p_centre = keras.ops.matmul(x, kernel[f + fe :])
        p_rank = keras.ops.matmul(edge_table, kernel[f : f + fe]) + bias
        pre = (keras.ops.take(p_recv, recv, axis=0) + keras.ops.take(p_rank, rank, axis=0)
               + p_centre[:, None, :])  # [R, K, 2*H*hid]
        width = self.heads * self.attention.hidden_dim
        pre_a, pre_m = keras.ops.split(keras.ops.reshape(pre, (-1, 2 * width)), 2, axis=1)
        logits = self.attention.hidden_to_output(pre_a)  # [R*K, H, F or 1]
        msgs = self.message.hidden_to_output(pre_m)  # [R*K, H, F]
        n_atoms = keras.ops.shape(x)[0]
        if segments is None:
            agg = segment_softmax_aggregate(logits, msgs, keras.ops.reshape(recv, (-1,)), n_atoms)  # [R, H, F]
        else:
            agg = segment_softmax_aggregate(logits, msgs, keras.ops.reshape(segments, (-1,)), n_atoms + 1)[:-1]
        return keras.ops.mean(agg, axis=1)

    def call(
        self,
        x: Tensor,
        x0: Tensor,
        edge_table: Tensor,
        recv: Tensor,
        rank: Tensor,
        segments: Tensor | None = None,
        return_aggregate: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        aggr = self.aggregate(x, edge_table, recv, rank, segments)
        update = self.hyper(aggr, x, x0)
        if return_aggregate:
            return update, aggr
        return update

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}MH_A.*``, ``{prefix}MH_M.*``, ``{prefix}Pooling_NN.*``."""
        return (
            self.attention.torch_weights(prefix + "MH_A.")
            + self.message.torch_weights(prefix + "MH_M.")
            + self.hyper.torch_weights(prefix + "Pooling_NN.")
        )

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            fea_len=self.fea_len,
            edge_len=self.edge_len,
            heads=self.heads,
            first=self.first,
            vector_attention=self.vector_attention,
        )
        return cfg


@keras.saving.register_keras_serializable(package="atomsets_tf")
class EdgeUpdate(keras.layers.Layer):
    """CGAT edge update, as the original computes it: ``e + MLP(e)``.

    ``GATConvEdges`` with its default ``no_hyper=True`` evaluates a multi-head attention over the
    node features and then discards it, returning only ``MLP(edge_attr)`` (Linear, LeakyReLU(0.01),
    Linear; golden README surprise 4). The discarded part changes no output and no gradient, so it
    is not computed here; its weights in a checkpoint are accepted and ignored by the converter.
    Since edge features are then a function of the rank only, this layer works on the
    ``[n_ranks, Fe]`` rank table (exact). The residual addition happens in the caller.

    Args:
        edge_len: edge feature width Fe.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        e: edge features (in CGAT: the rank table).

    Input shape:
        ``(..., edge_len)``.

    Output shape:
        ``(..., edge_len)``: ``MLP(e)``, the update without the residual.

    Example:

    >>> import numpy as np
    >>> edge = EdgeUpdate(edge_len=3)
    >>> tuple(edge(np.ones((25, 3), "float32")).shape)
    (25, 3)
    """

    def __init__(self, edge_len: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge_len = int(edge_len)

    def build(self, input_shape: Any = None) -> None:
        n = self.edge_len
        self.kernel_1 = self.add_weight(name="kernel_1", shape=(n, n), initializer=torch_uniform(n))
        self.bias_1 = self.add_weight(name="bias_1", shape=(n,), initializer=torch_uniform(n))
        self.kernel_2 = self.add_weight(name="kernel_2", shape=(n, n), initializer=torch_uniform(n))
        self.bias_2 = self.add_weight(name="bias_2", shape=(n,), initializer=torch_uniform(n))
        super().build(input_shape)

    def call(self, e: Tensor) -> Tensor:
        h = leaky_relu(keras.ops.matmul(e, self.kernel_1) + self.bias_1)
        return keras.ops.matmul(h, self.kernel_2) + self.bias_2

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}Pooling_NN.fcs.0.*`` and ``{prefix}Pooling_NN.fc_out.*``."""
        p = prefix + "Pooling_NN."
        return [
            TorchWeight(p + "fcs.0.weight", self.kernel_1, t_linear),
            TorchWeight(p + "fcs.0.bias", self.bias_1, t_identity),
            TorchWeight(p + "fc_out.weight", self.kernel_2, t_linear),
            TorchWeight(p + "fc_out.bias", self.bias_2, t_identity),
        ]

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(edge_len=self.edge_len)
        return cfg
