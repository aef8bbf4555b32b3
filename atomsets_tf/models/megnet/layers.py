"""Keras 3 layers of MEGNet, on the package's padded batch layout.

Every tensor has a leading batch axis ``B`` (one graph per row), so that
``tf.distribute`` can split a batch:

* atoms ``[B, N, d]`` with an atom mask ``[B, N]`` (1 for a real atom, 0 for padding);
* bonds ``[B, M, d]`` with a bond mask ``[B, M]``; ``index1`` / ``index2`` ``[B, M]``
  are the bond's centre and neighbour atoms, **local** to each graph (padding bonds
  may point anywhere inside the graph; the mask removes them);
* the state ``[B, d_u]``.

Means over bonds or atoms only count real entries, so a graph's result does not
depend on the padding or on the other graphs in its batch.

The layers reproduce megnet 1.3.2 (Keras 2) numerically:

* :class:`GaussianExpansion`: ``exp(-(d - mu_k)^2 / w^2)`` computed in float64
  then cast to float32, as megnet's ``GaussianDistance`` converter does in NumPy.
* :class:`MEGNetBlock`: megnet's ``MEGNetLayer`` (edge, node and state updates,
  mean aggregation, last layer of each MLP linear).
* :class:`MEGNetSet2Set`: megnet's ``Set2Set`` (LSTM cell state re-zeroed at
  every step, Keras 2 ``hard_sigmoid`` gates, attention over projected memories),
  the package's one set2set core
  (:class:`~atomsets_tf.layers.weighted_set2set.Set2SetCore`) with megnet's
  summation order.
* :class:`ExtensiveTargetScaler`: megnet's ``StandardScaler.inverse_transform``
  (intensive or extensive), the package's :class:`~atomsets_tf.layers.TargetScaler`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from atomsets_tf.layers import activations
from atomsets_tf.layers.target_scaler import TargetScaler
from atomsets_tf.layers.weighted_set2set import Set2SetCore, ordered_set_sum
from atomsets_tf.models.megnet.activations import serialize_activation


def gaussian_expand_numpy(distances: np.ndarray, centers: Sequence[float], width: float) -> np.ndarray:
    """megnet's ``GaussianDistance.convert``: ``exp(-(d - mu)^2 / w^2)`` in float64, as float32.

    Args:
        distances: ``(n,)`` bond lengths (megnet passes float32 values).
        centers: ``(k,)`` Gaussian centres.
        width: the width ``w`` (megnet divides by ``w**2``, not ``2 sigma**2``).

    Returns:
        float32 ``(n, k)``.
    """
    d = np.asarray(distances, dtype=np.float64)[:, None]
    mu = np.asarray(centers, dtype=np.float64)[None, :]
    return np.exp(-((d - mu) ** 2) / float(width) ** 2).astype(np.float32)


@keras.saving.register_keras_serializable(package="atomsets_tf")
class GaussianExpansion(keras.layers.Layer):
    """Expands bond lengths on Gaussians: ``exp(-(d - mu_k)^2 / width^2)``.

    Computed in float64 and cast to float32, which reproduces megnet's NumPy
    converter bit for bit (up to the last float32 ulp).

    Args:
        centers: the Gaussian centres (megnet: ``linspace(0, 5, 100)`` for the 4 Å
            models, ``linspace(0, 6, 100)`` for the 5 Å ones).
        width: the width ``w``.
        cutoff: the graph's neighbour cutoff in Å. Not used in the computation; kept
            in the config so that a saved model knows how to build its graphs.

    Call arguments:
        distances: bond lengths in Å.

    Input shape:
        float ``(batch, n_bonds)``.

    Output shape:
        float32 ``(batch, n_bonds, len(centers))``.

    Example:

    >>> import numpy as np
    >>> layer = GaussianExpansion(centers=[0.0, 1.0, 2.0], width=0.5, cutoff=4.0)
    >>> out = np.asarray(layer(np.array([[1.0, 2.0]], "float32")))
    >>> out.shape, float(out[0, 0, 1]), float(out[0, 1, 2])
    ((1, 2, 3), 1.0, 1.0)
    """

    def __init__(self, centers: Sequence[float], width: float, cutoff: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.centers = [float(c) for c in centers]
        self.width = float(width)
        self.cutoff = None if cutoff is None else float(cutoff)
        if not self.centers or not self.width > 0:
            raise ValueError("GaussianExpansion needs at least one centre and a positive width")

    def build(self, input_shape):
        self.built = True

    def call(self, distances):
        d = ops.cast(distances, "float64")[..., None]
        mu = ops.convert_to_tensor(np.asarray(self.centers, dtype=np.float64))
        out = ops.exp(-ops.square(d - mu) / (self.width**2))
        return ops.cast(out, "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape, len(self.centers))

    def compute_output_spec(self, distances):
        return keras.KerasTensor((*distances.shape, len(self.centers)), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"centers": self.centers, "width": self.width, "cutoff": self.cutoff})
        return config


def _gather_rows(x, index):
    """``x[b, index[b, k]]`` for ``x`` ``[B, N, d]`` and ``index`` ``[B, M]``: ``[B, M, d]``."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # optional: only the TensorFlow backend has a batched gather

        return tf.gather(x, index, batch_dims=1)
    return ops.take_along_axis(x, index[..., None], axis=1)


def _masked_segment_sum(data, segment_ids, mask, n_segments_per_graph):
    """Sum of ``data`` ``[B, M, d]`` grouped by local ``segment_ids`` ``[B, M]``, entries with ``mask`` 1 only.

    Returns ``[B, S, d]`` (``S = n_segments_per_graph``); a segment with no entry gets 0.
    """
    shape = ops.shape(data)
    batch, d = shape[0], shape[-1]
    offsets = ops.arange(batch, dtype=segment_ids.dtype)[:, None] * ops.cast(n_segments_per_graph, segment_ids.dtype)
    flat_ids = ops.reshape(segment_ids + offsets, (-1,))
    flat = ops.reshape(data * mask[..., None], (-1, d))
    sums = ops.segment_sum(flat, flat_ids, num_segments=batch * n_segments_per_graph)
    return ops.reshape(sums, (batch, n_segments_per_graph, d))


def _masked_segment_mean(data, segment_ids, mask, n_segments_per_graph):
    """Mean of ``data`` ``[B, M, d]`` grouped by local ``segment_ids`` ``[B, M]``.

    Only entries with ``mask`` 1 count; a segment with no entry gets 0
    (megnet's behaviour for an isolated atom). Returns ``[B, S, d]``.
    """
    sums = _masked_segment_sum(data, segment_ids, mask, n_segments_per_graph)
    counts = _masked_segment_sum(ops.ones_like(data[..., :1]), segment_ids, mask, n_segments_per_graph)
    return sums / ops.maximum(counts, 1.0)


def _masked_mean(data, mask):
    """Mean of ``data`` ``[B, K, d]`` over its real rows (``mask`` ``[B, K]``): ``[B, d]``."""
    total = ordered_set_sum(data, mask)
    count = ops.maximum(ordered_set_sum(ops.ones_like(data[..., :1]), mask), 1.0)
    return total / count


@keras.saving.register_keras_serializable(package="atomsets_tf")
class MEGNetBlock(keras.layers.Layer):
    r"""megnet's ``MEGNetLayer``: one graph convolution updating bonds, atoms and state.

    With :math:`\phi` MLPs whose hidden layers use ``activation`` and whose last
    layer is linear:

    1. :math:`e'_k = \phi_e([v_{s_k}, v_{r_k}, e_k, u])` (``s_k = index1``, ``r_k = index2``);
    2. :math:`\bar e_i` = mean of :math:`e'_k` over the bonds with ``index1 == i``
       (0 for an atom without bonds);
    3. :math:`v'_i = \phi_v([\bar e_i, v_i, u])`;
    4. :math:`u' = \phi_u([\mathrm{mean}_k\, e'_k, \mathrm{mean}_i\, v'_i, u])`.

    There is no residual connection inside the layer (megnet adds it outside).

    Weights are named as in megnet (``weight_e_0``, ``bias_e_0``, ...), so a
    checkpoint's arrays load by name.

    Args:
        units_v, units_e, units_u: hidden and output widths of the three MLPs
            (megnet: ``[64, 64, 32]`` each).
        activation: activation of the hidden layers (megnet: ``softplus2``).
        pool_method: ``"mean"`` (megnet's default) or ``"sum"``.
        kernel_initializer, bias_initializer: initialisers for training from scratch.

    Call arguments:
        inputs: ``[v, e, u, index1, index2, atom_mask, bond_mask]``: atom, bond and
            state features, each bond's centre and neighbour atom (indices local to
            each graph), and the masks (1 real, 0 padding).

    Input shape:
        ``v``: float ``(batch, n_atoms, d_v)``; ``e``: float ``(batch, n_bonds, d_e)``;
        ``u``: float ``(batch, d_u)``; ``index1``, ``index2``: int ``(batch, n_bonds)``;
        ``atom_mask``: ``(batch, n_atoms)``; ``bond_mask``: ``(batch, n_bonds)``.

    Output shape:
        ``[v' (batch, n_atoms, units_v[-1]), e' (batch, n_bonds, units_e[-1]),
        u' (batch, units_u[-1])]``. Padding rows of ``v'`` and ``e'`` hold finite
        values that carry no meaning.

    Example:

    >>> import numpy as np
    >>> block = MEGNetBlock([4, 3], [4, 2], [4, 5])
    >>> v, e, u = np.ones((1, 2, 3), "float32"), np.ones((1, 2, 6), "float32"), np.zeros((1, 2), "float32")
    >>> index1, index2 = np.array([[0, 1]], "int32"), np.array([[1, 0]], "int32")
    >>> outs = block([v, e, u, index1, index2, np.ones((1, 2), "float32"), np.ones((1, 2), "float32")])
    >>> [tuple(t.shape) for t in outs]
    [(1, 2, 3), (1, 2, 2), (1, 5)]
    """

    def __init__(
        self,
        units_v: Sequence[int] = (64, 64, 32),
        units_e: Sequence[int] = (64, 64, 32),
        units_u: Sequence[int] = (64, 64, 32),
        activation="softplus2",
        pool_method: str = "mean",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units_v = [int(x) for x in units_v]
        self.units_e = [int(x) for x in units_e]
        self.units_u = [int(x) for x in units_u]
        if pool_method not in ("mean", "sum"):
            raise ValueError(f"pool_method must be 'mean' or 'sum', got {pool_method!r}")
        self.pool_method = pool_method
        self.activation = activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _mlp_weights(self, tag: str, in_dim: int, units: list[int]):
        kernels, biases = [], []
        dims = [in_dim, *units]
        for j, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            kernels.append(self.add_weight(shape=(a, b), initializer=self.kernel_initializer, name=f"weight_{tag}_{j}"))
        for j, b in enumerate(units):
            biases.append(self.add_weight(shape=(b,), initializer=self.bias_initializer, name=f"bias_{tag}_{j}"))
        return kernels, biases

    def build(self, input_shape):
        v_shape, e_shape, u_shape = input_shape[0], input_shape[1], input_shape[2]
        vdim, edim, udim = int(v_shape[-1]), int(e_shape[-1]), int(u_shape[-1])
        # Same creation order as megnet (v, e, u), so get_weights() lists them in the h5 order.
        self.phi_v_kernels, self.phi_v_biases = self._mlp_weights("v", self.units_e[-1] + vdim + udim, self.units_v)
        self.phi_e_kernels, self.phi_e_biases = self._mlp_weights("e", 2 * vdim + edim + udim, self.units_e)
        self.phi_u_kernels, self.phi_u_biases = self._mlp_weights(
            "u", self.units_e[-1] + self.units_v[-1] + udim, self.units_u
        )
        self.built = True

    def _mlp(self, x, kernels, biases):
        n = len(kernels)
        for j, (w, b) in enumerate(zip(kernels, biases, strict=True)):
            x = ops.matmul(x, w) + b
            if j < n - 1:
                x = self.activation(x)
        return x

    def call(self, inputs):
        v, e, u, index1, index2, atom_mask, bond_mask = inputs
        index1 = ops.cast(index1, "int32")
        index2 = ops.cast(index2, "int32")
        atom_mask = ops.cast(atom_mask > 0, v.dtype)
        bond_mask = ops.cast(bond_mask > 0, e.dtype)
        n_atoms = ops.shape(v)[1]
        n_bonds = ops.shape(e)[1]

        v_s = _gather_rows(v, index1)
        v_r = _gather_rows(v, index2)
        u_bonds = ops.broadcast_to(u[:, None, :], (ops.shape(u)[0], n_bonds, ops.shape(u)[-1]))
        e_new = self._mlp(ops.concatenate([v_s, v_r, e, u_bonds], axis=-1), self.phi_e_kernels, self.phi_e_biases)

        if self.pool_method == "mean":
            b = _masked_segment_mean(e_new, index1, bond_mask, n_atoms)
        else:
            b = _masked_segment_sum(e_new, index1, bond_mask, n_atoms)
        u_atoms = ops.broadcast_to(u[:, None, :], (ops.shape(u)[0], n_atoms, ops.shape(u)[-1]))
        v_new = self._mlp(ops.concatenate([b, v, u_atoms], axis=-1), self.phi_v_kernels, self.phi_v_biases)

        if self.pool_method == "mean":
            e_pool = _masked_mean(e_new, bond_mask)
            v_pool = _masked_mean(v_new, atom_mask)
        else:
            e_pool = ordered_set_sum(e_new, bond_mask)
            v_pool = ordered_set_sum(v_new, atom_mask)
        u_new = self._mlp(ops.concatenate([e_pool, v_pool, u], axis=-1), self.phi_u_kernels, self.phi_u_biases)
        return [v_new, e_new, u_new]

    def compute_output_shape(self, input_shape):
        v_shape, e_shape, u_shape = input_shape[0], input_shape[1], input_shape[2]
        return [
            (*v_shape[:-1], self.units_v[-1]),
            (*e_shape[:-1], self.units_e[-1]),
            (*u_shape[:-1], self.units_u[-1]),
        ]

    def compute_output_spec(self, inputs):
        v, e, u = inputs[0], inputs[1], inputs[2]
        return [
            keras.KerasTensor((*v.shape[:-1], self.units_v[-1]), dtype=v.dtype),
            keras.KerasTensor((*e.shape[:-1], self.units_e[-1]), dtype=e.dtype),
            keras.KerasTensor((*u.shape[:-1], self.units_u[-1]), dtype=u.dtype),
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units_v": self.units_v,
                "units_e": self.units_e,
                "units_u": self.units_u,
                "activation": serialize_activation(self.activation),
                "pool_method": self.pool_method,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="atomsets_tf")
class MEGNetSet2Set(Set2SetCore):
    r"""megnet's ``Set2Set`` readout, on padded sets.

    :class:`~atomsets_tf.layers.weighted_set2set.Set2SetCore` with megnet's
    conventions: memories :math:`m_i = x_i W_m + b_m` (``n_hidden`` wide);
    :math:`q^*_0 = 0`; then ``steps`` times:

    1. :math:`z = q^*_{t-1} K + b_K` (``K`` is ``(2 n_hidden, 4 n_hidden)``; ``q^*`` is the LSTM's only input);
    2. gates ``i, f, g, o`` split from ``z`` in that order; ``i, f, o`` use ``recurrent_activation``
       (Keras 2's ``hard_sigmoid``, ``clip(0.2 x + 0.5, 0, 1)``, in megnet);
    3. :math:`c = f \cdot c_0 + i \cdot \tanh(g)` with :math:`c_0 = 0` **at every step** (megnet
       computes the new cell state and drops it, so the forget gate has no effect), :math:`h = o \tanh(c)`;
    4. :math:`a_i = \mathrm{softmax}_i(m_i \cdot h)` over the real rows (max-subtracted),
       :math:`r = \sum_i a_i m_i` (a sum over the projected memories, not over ``x``);
    5. :math:`q^*_t = [h, r]`.

    Each set's sums are TensorFlow sorted segment sums over exactly its real rows
    (``set_sum="sorted_segment_sum"``), as in megnet, so the result matches
    megnet's float32 rounding and does not depend on the padding. Padding rows
    must follow the real rows. Weights are named as in megnet (``x_to_m_weight``,
    ``x_to_m_bias``, ``recurrent_kernel``, ``recurrent_bias``); the forget gate's
    bias starts at 1 (megnet's ``unit_forget_bias``), the other biases at 0.

    Args:
        n_hidden: width of the memories and of the LSTM state.
        steps: number of steps ``T`` (2 or 3 in the published models).
        activation: the LSTM's cell activation (``tanh``).
        recurrent_activation: the gate activation (``hard_sigmoid_keras2``).
        carry_cell_state: ``True`` carries ``c`` across steps (a standard LSTM). ``False``
            (default) is megnet's behaviour.
        kernel_initializer, recurrent_initializer, bias_initializer: initialisers of
            the memory projection, the LSTM kernel and the memory bias.

    Call arguments:
        inputs: ``[x, mask]``; ``mask`` is 1 for a real row, 0 for padding (any
            positive value counts as 1).

    Input shape:
        ``x``: float ``(batch, n_rows, d)``; ``mask``: ``(batch, n_rows)``.

    Output shape:
        ``(batch, 2 * n_hidden)``, ordered ``[h, r]``.

    Example:

    >>> import numpy as np
    >>> layer = MEGNetSet2Set(n_hidden=4, steps=2)
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    >>> mask = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], "float32")
    >>> tuple(layer([x, mask]).shape)
    (2, 8)

    It is the shared core with megnet's summation order, and agrees with the
    AtomSets paper's weighted set2set on a 0/1 mask up to float32 rounding:

    >>> from atomsets_tf.layers import WeightedSet2Set
    >>> core, weighted = Set2SetCore(4, steps=2, set_sum="sorted_segment_sum"), WeightedSet2Set(4, steps=2)
    >>> for other in (core, weighted):
    ...     _ = other([x, mask])
    ...     other.set_weights(layer.get_weights())
    >>> bool(np.array_equal(np.asarray(core([x, mask])), np.asarray(layer([x, mask]))))
    True
    >>> bool(np.allclose(np.asarray(weighted([x, mask])), np.asarray(layer([x, mask])), atol=1e-6))
    True
    """

    def __init__(
        self,
        n_hidden: int = 16,
        steps: int = 3,
        activation="tanh",
        recurrent_activation="hard_sigmoid_keras2",
        carry_cell_state: bool = False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        if int(n_hidden) < 1 or int(steps) < 1:
            raise ValueError("n_hidden and steps must be positive")
        super().__init__(
            int(n_hidden),
            steps=steps,
            carry_cell_state=carry_cell_state,
            activation=activation,
            recurrent_activation=recurrent_activation,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=True,
            set_sum="sorted_segment_sum",
            **kwargs,
        )

    @property
    def n_hidden(self) -> int:
        """Width of the memories and of the LSTM state (the core's ``units``)."""
        return self.units

    @property
    def m_weight(self):
        """The memory projection's kernel (``x_to_m_weight``)."""
        return self.memory_kernel

    @property
    def m_bias(self):
        """The memory projection's bias (``x_to_m_bias``)."""
        return self.memory_bias

    def _recurrent_bias_initializer(self, shape, dtype=None):
        """megnet's ``unit_forget_bias``: zeros, ones on the forget gate, whatever ``bias_initializer``."""
        h = self.units
        return ops.concatenate([ops.zeros((h,), dtype), ops.ones((h,), dtype), ops.zeros((2 * h,), dtype)])

    def call(self, inputs):
        x, mask = inputs
        return super().call([x, ops.cast(mask > 0, x.dtype)])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs[0].shape[0], 2 * self.units), dtype=inputs[0].dtype)

    def _serialize_activation(self, fn):
        return serialize_activation(fn)

    def get_config(self):
        config = super().get_config()
        config["n_hidden"] = self.units
        return config


@keras.saving.register_keras_serializable(package="atomsets_tf")
class ExtensiveTargetScaler(TargetScaler):
    """megnet's ``StandardScaler.inverse_transform``, inside the model.

    :class:`~atomsets_tf.layers.TargetScaler` as megnet's scaler: ``y = raw * std + mean``
    for an intensive target; ``y = n_atoms * (raw * std + mean)`` for an extensive
    one (megnet scaled extensive targets per atom). megnet's ``DummyScaler`` is
    ``mean=0, std=1, is_intensive=True`` (the identity). Unlike ``TargetScaler``, it is
    always called with the atom mask and always records ``is_intensive``.

    Args:
        mean, std: the scaler's statistics (``std == 0`` is read as 1, as megnet does).
        is_intensive: whether the target is intensive.

    Call arguments:
        inputs: ``[raw, atom_mask]``; ``atom_mask``'s count of positive entries
            per row is ``n_atoms``.

    Input shape:
        ``raw``: float ``(batch, k)``; ``atom_mask``: ``(batch, n_atoms)``.

    Output shape:
        ``(batch, k)``.

    Example:

    >>> import numpy as np
    >>> scaler = ExtensiveTargetScaler(mean=1.0, std=2.0, is_intensive=False)
    >>> mask = np.array([[1.0, 1.0, 0.0]], "float32")
    >>> np.asarray(scaler([np.array([[0.5]], "float32"), mask])).tolist()
    [[4.0]]
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, is_intensive: bool = True, **kwargs):
        super().__init__(mean, float(std) if float(std) != 0.0 else 1.0, is_intensive=is_intensive, **kwargs)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)

    def get_config(self):
        config = super().get_config()
        config["is_intensive"] = self.is_intensive
        return config
