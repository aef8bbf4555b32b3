"""Crystal pooling (``MHAttention``) and the ReZero residual output head of CGAT."""

from __future__ import annotations

from typing import Any

import keras

from atomsets_tf.models.cgat._common import Tensor, TorchWeight, t_identity, t_linear, torch_uniform
from atomsets_tf.models.cgat.attention import MultiHeadMLP, segment_softmax_aggregate


@keras.saving.register_keras_serializable(package="atomsets_tf")
class CrystalAttentionPool(keras.layers.Layer):
    """Multi-head attention pooling of the atoms of each crystal, conditioned on the ROOST vector.

    Per atom: message ``m = MLP_M(x)`` (``[heads, F]``) and attention logits
    ``MLP_A([x, c])`` where ``c`` is the ROOST vector of the atom's crystal; the logits are
    soft-maxed over the atoms of each crystal per head (and per channel with vector attention),
    and the weighted messages summed. Both MLPs are :class:`MultiHeadMLP` with hidden width F.
    The heads are returned concatenated, head-major (``[B, heads*F]``); the original averages
    them only with ``mean_pooling`` (which its CLI inverts, so by default it concatenates).

    Args:
        fea_len: node (and ROOST vector) width F.
        heads: attention heads.
        vector_attention: one attention coefficient per channel (True) or per head (False).
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        x: node features of the R atoms of the batch.
        crys: ROOST vector of each of the B crystals.
        crystal_id: int, crystal of each atom, in ``[0, n_crystals)``.
        n_crystals: number of crystals B (pass it by keyword when it is a Python int).
        segments: optional int pooling index per atom when it differs from ``crystal_id``; the
            value ``n_crystals`` drops an atom (static-shape mode, padding).

    Input shape:
        ``x``: ``(R, fea_len)``; ``crys``: ``(B, fea_len)``; ``crystal_id``, ``segments``: ``(R,)``.

    Output shape:
        ``(B, heads * fea_len)``.

    Example:

    >>> import numpy as np
    >>> pool = CrystalAttentionPool(fea_len=4, heads=2)
    >>> x = np.ones((5, 4), "float32")
    >>> crys = np.ones((2, 4), "float32")
    >>> crystal_id = np.array([0, 0, 0, 1, 1], "int32")
    >>> tuple(pool(x, crys, crystal_id, n_crystals=2).shape)
    (2, 8)
    """

    def __init__(self, fea_len: int, heads: int = 5, vector_attention: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fea_len = int(fea_len)
        self.heads = int(heads)
        self.vector_attention = bool(vector_attention)
        f = self.fea_len
        self.attention = MultiHeadMLP(2 * f, f, f if self.vector_attention else 1, self.heads, name="attention")
        self.message = MultiHeadMLP(f, f, f, self.heads, name="message")

    def build(self, input_shape: Any = None) -> None:
        self.attention.build(None)
        self.message.build(None)
        super().build(input_shape)

    def call(self, x: Tensor, crys: Tensor, crystal_id: Tensor, n_crystals: Tensor,
             segments: Tensor | None = None) -> Tensor:
        m = self.message(x)
        logits = self.attention(keras.ops.concatenate([x, keras.ops.take(crys, crystal_id, axis=0)], axis=-1))
        if segments is None:
            out = segment_softmax_aggregate(logits, m, crystal_id, n_crystals)  # [B, H, F]
        else:  # static-shape mode: segment id n_crystals drops an atom (padding)
            out = segment_softmax_aggregate(logits, m, segments, n_crystals + 1)[:-1]
        return keras.ops.reshape(out, (-1, self.heads * self.fea_len))

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}MH_A.*`` and ``{prefix}MH_M.*``."""
        return self.attention.torch_weights(prefix + "MH_A.") + self.message.torch_weights(prefix + "MH_M.")

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(fea_len=self.fea_len, heads=self.heads, vector_attention=self.vector_attention)
        return cfg


@keras.saving.register_keras_serializable(package="atomsets_tf")
class RezeroResidualHead(keras.layers.Layer):
    """CGAT output network (``ResidualNetwork``): residual ReLU blocks with ReZero, then a Linear.

    Block ``k``: ``h <- alpha_k * relu(W_k h + b_k) + R_k h`` where ``R_k`` is a bias-free Linear
    when the width changes and the identity otherwise; ``alpha_k`` starts at 0 (so the head is
    linear at initialisation, golden README surprise 7); without ``rezero`` the factor is 1.
    Output ``[B, output_dim]`` (CGAT: 2 = normalised value and log-std).

    Args:
        input_dim: input width.
        output_dim: output width.
        hidden_dims: widths of the residual blocks.
        rezero: learnt ReZero factors (starting at 0) on the residual branches.
        **kwargs: passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Call arguments:
        x: per-crystal features.
        return_blocks: also return the list of block outputs ``(B, hidden_dims[k])``.

    Input shape:
        ``(B, input_dim)``.

    Output shape:
        ``(B, output_dim)`` (and the block outputs with ``return_blocks``).

    Example:

    >>> import numpy as np
    >>> head = RezeroResidualHead(input_dim=6, output_dim=2, hidden_dims=[8, 8])
    >>> out, blocks = head(np.ones((3, 6), "float32"), return_blocks=True)
    >>> tuple(out.shape), [tuple(b.shape) for b in blocks]
    ((3, 2), [(3, 8), (3, 8)])
    """

    def __init__(self, input_dim: int, output_dim: int = 2,
                 hidden_dims: list[int] | tuple[int, ...] = (1024, 1024, 512, 512, 256, 256, 128),
                 rezero: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.rezero = bool(rezero)

    def build(self, input_shape: Any = None) -> None:
        dims = [self.input_dim, *self.hidden_dims]
        self.kernels, self.biases, self.res_kernels, self.alphas = [], [], [], []
        for i in range(len(dims) - 1):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(dims[i], dims[i + 1]),
                                                initializer=torch_uniform(dims[i])))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(dims[i + 1],),
                                               initializer=torch_uniform(dims[i])))
            if dims[i] != dims[i + 1]:
                self.res_kernels.append(self.add_weight(name=f"res_kernel_{i}", shape=(dims[i], dims[i + 1]),
                                                        initializer=torch_uniform(dims[i])))
            else:
                self.res_kernels.append(None)
            if self.rezero:
                self.alphas.append(self.add_weight(name=f"rezero_alpha_{i}", shape=(1,), initializer="zeros"))
        self.kernel_out = self.add_weight(name="kernel_out", shape=(dims[-1], self.output_dim),
                                          initializer=torch_uniform(dims[-1]))
        self.bias_out = self.add_weight(name="bias_out", shape=(self.output_dim,), initializer=torch_uniform(dims[-1]))
        super().build(input_shape)

    def call(self, x: Tensor, return_blocks: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        blocks = []
        for i, (k, b, r) in enumerate(zip(self.kernels, self.biases, self.res_kernels, strict=True)):
            branch = keras.ops.relu(keras.ops.matmul(x, k) + b)
            if self.rezero:
                branch = self.alphas[i] * branch
            x = branch + (keras.ops.matmul(x, r) if r is not None else x)
            blocks.append(x)
        out = keras.ops.matmul(x, self.kernel_out) + self.bias_out
        if return_blocks:
            return out, blocks
        return out

    def torch_weights(self, prefix: str) -> list[TorchWeight]:
        """Map to ``{prefix}fcs.i.*``, ``{prefix}res_fcs.i.weight``, ``{prefix}rezeros.i.alpha``, ``{prefix}fc_out.*``."""
        out = []
        for i, (k, b, r) in enumerate(zip(self.kernels, self.biases, self.res_kernels, strict=True)):
            out += [TorchWeight(f"{prefix}fcs.{i}.weight", k, t_linear),
                    TorchWeight(f"{prefix}fcs.{i}.bias", b, t_identity)]
            if r is not None:
                out.append(TorchWeight(f"{prefix}res_fcs.{i}.weight", r, t_linear))
            if self.rezero:
                out.append(TorchWeight(f"{prefix}rezeros.{i}.alpha", self.alphas[i], t_identity))
        out += [TorchWeight(prefix + "fc_out.weight", self.kernel_out, t_linear),
                TorchWeight(prefix + "fc_out.bias", self.bias_out, t_identity)]
        return out

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim, hidden_dims=list(self.hidden_dims),
                   rezero=self.rezero)
        return cfg
