"""Set2set readouts: one LSTM-attention core (:class:`Set2SetCore`) and the AtomSets paper's weighted set2set.

:class:`Set2SetCore` is the loop shared by :class:`WeightedSet2Set` (AtomSets
paper, eqs. 5-9) and :class:`atomsets_tf.models.megnet.layers.MEGNetSet2Set` (megnet's
``Set2Set``); the two differ only in how a set's sums are taken
(``set_sum``) and in their config names.
"""

from __future__ import annotations

import keras
from keras import ops

from atomsets_tf.layers import activations

#: ``set_sum`` values of :class:`Set2SetCore`.
SET_SUMS = ("reduce_sum", "sorted_segment_sum")


def ordered_set_sum(data, weights):
    """Sum of ``data`` ``[B, K, d]`` over each set's rows, masked by ``weights`` ``[B, K]``: ``[B, d]``.

    Accumulates row by row in order (an unsorted segment sum), so appended padding
    rows (zeros) leave the result bit-for-bit unchanged.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> np.asarray(ordered_set_sum(x, np.array([[1.0, 1.0, 0.0]], "float32"))).tolist()
    [[2.0, 4.0]]
    """
    shape = ops.shape(data)
    batch, k, d = shape[0], shape[1], shape[2]
    ids = ops.reshape(ops.repeat(ops.arange(batch, dtype="int32")[:, None], k, axis=1), (-1,))
    flat = ops.reshape(data * weights[..., None], (-1, d))
    return ops.segment_sum(flat, ids, num_segments=batch)


def sorted_segment_set_sum(data, weights):
    """Sum of ``data`` ``[B, K, d]`` over each set's real rows, as megnet's sorted ``segment_sum``: ``[B, d]``.

    megnet's Set2Set reduces each graph's rows with TensorFlow's *sorted*
    ``segment_sum``, whose float32 summation order differs from a row-by-row
    accumulation. Here a set's real rows (``weights > 0``) form segment ``2b`` and
    its padding rows segment ``2b + 1``, so each set's real rows are reduced exactly
    as megnet reduces them, whatever the padding. Requires padding rows to follow
    the real rows (the package's layout). Other backends: :func:`ordered_set_sum`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> np.asarray(sorted_segment_set_sum(x, np.array([[1.0, 1.0, 0.0]], "float32"))).tolist()
    [[2.0, 4.0]]
    """
    if keras.backend.backend() != "tensorflow":
        return ordered_set_sum(data, weights)
    import tensorflow as tf  # optional: only the TensorFlow backend has the sorted segment sum

    shape = tf.shape(data)
    batch, d = shape[0], shape[2]
    pad = tf.cast(weights <= 0, tf.int32)
    ids = tf.reshape(2 * tf.range(batch, dtype=tf.int32)[:, None] + pad, [-1])
    sums = tf.math.segment_sum(tf.reshape(data * weights[..., None], [-1, d]), ids)
    return sums[::2]


class Set2SetCore(keras.layers.Layer):
    r"""The LSTM-attention loop of set2set readouts, on padded, weighted sets.

    The layer projects rows to memories :math:`m_i = x_i W + b`, starts from
    :math:`q^*_0 = 0` and repeats ``steps`` times:

    .. math::
        q_t = \mathrm{LSTM}(q^*_{t-1}),\quad
        e_{i,t} = m_i \cdot q_t,\quad
        a_{i,t} = \frac{w_i \exp(e_{i,t})}{\sum_j w_j \exp(e_{j,t})},\quad
        r_t = \sum_i a_{i,t} m_i,\quad
        q^*_t = q_t \oplus r_t

    The LSTM's only input is :math:`q^*_{t-1}`: one kernel of shape
    ``(2 units, 4 units)`` and one bias, gates in Keras order i, f, c, o
    (``recurrent_activation`` on i, f, o; ``activation`` on the candidate and the
    cell). The softmax is stabilised by subtracting each set's maximum over its
    real rows (``w_i > 0``); a set without real rows gives zeros. Weights are
    created in the order ``x_to_m_weight``, ``x_to_m_bias``, ``recurrent_kernel``,
    ``recurrent_bias``.

    This base class is not registered for serialisation; use
    :class:`WeightedSet2Set` or :class:`~atomsets_tf.models.megnet.layers.MEGNetSet2Set`.

    Args:
        units: width of the memories and of the LSTM state.
        steps: number of attention steps ``T``.
        carry_cell_state: whether the LSTM cell state carries from one step to
            the next (``False``: re-zeroed at every step, as in maml and megnet).
        activation: the LSTM's cell activation.
        recurrent_activation: the LSTM's gate activation.
        kernel_initializer, recurrent_initializer, bias_initializer: initialisers
            of the memory projection, the LSTM kernel and the biases.
        unit_forget_bias: initialise the forget gate's bias to 1.
        set_sum: how a set's sums (the softmax normaliser and the readout) are
            taken: ``"reduce_sum"`` (a plain reduction over the rows) or
            ``"sorted_segment_sum"`` (megnet's summation order, see
            :func:`sorted_segment_set_sum`).

    Call arguments:
        inputs: ``[features, weights]``.

    Input shape:
        ``features``: float ``(batch, n_rows, d)``; ``weights``: float
        ``(batch, n_rows)``, non-negative, 0 on padding.

    Output shape:
        ``(batch, 2 * units)``, ordered ``[q_T, r_T]``.

    Example:

    >>> import numpy as np
    >>> layer = Set2SetCore(units=4, steps=2, set_sum="sorted_segment_sum")
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    >>> w = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], "float32")
    >>> tuple(layer([x, w]).shape)
    (2, 8)
    """

    def __init__(
        self,
        units: int,
        steps: int = 3,
        carry_cell_state: bool = False,
        activation: str = "tanh",
        recurrent_activation: str = "hard_sigmoid_keras2",
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        bias_initializer: str = "zeros",
        unit_forget_bias: bool = True,
        set_sum: str = "reduce_sum",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units < 1 or steps < 1:
            raise ValueError(f"units and steps must be positive, got units={units}, steps={steps}")
        if set_sum not in SET_SUMS:
            raise ValueError(f"set_sum must be one of {SET_SUMS}, got {set_sum!r}")
        self.units = int(units)
        self.steps = int(steps)
        self.carry_cell_state = bool(carry_cell_state)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.set_sum = set_sum

    def build(self, input_shape):
        features_shape, weights_shape = input_shape
        if len(features_shape) != 3 or len(weights_shape) != 2:
            raise ValueError(
                f"{self.name} expects [features (batch, n_atoms, d), weights (batch, n_atoms)], "
                f"got shapes {features_shape} and {weights_shape}"
            )
        d = features_shape[-1]
        u = self.units
        self.memory_kernel = self.add_weight(shape=(d, u), initializer=self.kernel_initializer, name="x_to_m_weight")
        self.memory_bias = self.add_weight(shape=(u,), initializer=self.bias_initializer, name="x_to_m_bias")
        self.recurrent_kernel = self.add_weight(
            shape=(2 * u, 4 * u), initializer=self.recurrent_initializer, name="recurrent_kernel"
        )
        self.recurrent_bias = self.add_weight(
            shape=(4 * u,), initializer=self._recurrent_bias_initializer, name="recurrent_bias"
        )
        self.built = True

    def _recurrent_bias_initializer(self, shape, dtype=None):
        u = self.units
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        return ops.concatenate(
            [
                self.bias_initializer((u,), dtype=dtype),
                ops.ones((u,), dtype=dtype),
                self.bias_initializer((2 * u,), dtype=dtype),
            ]
        )

    def _lstm_step(self, q_star, cell):
        """One LSTM step on input ``q_star`` from cell state ``cell``: ``(hidden, new_cell)``."""
        u = self.units
        z = ops.matmul(q_star, self.recurrent_kernel) + self.recurrent_bias
        gate_i = self.recurrent_activation(z[:, :u])
        gate_f = self.recurrent_activation(z[:, u : 2 * u])
        candidate = self.activation(z[:, 2 * u : 3 * u])
        gate_o = self.recurrent_activation(z[:, 3 * u :])
        new_cell = gate_f * cell + gate_i * candidate
        return gate_o * self.activation(new_cell), new_cell

    def _sum_over_set(self, data, weights):
        """``data`` ``[B, K, d]`` summed over each set's rows: ``[B, d]``."""
        if self.set_sum == "sorted_segment_sum":
            return sorted_segment_set_sum(data, weights)
        return ops.sum(data, axis=1)

    def _attend(self, memory, hidden, weights, real):
        """The attention readout ``r`` ``[B, units]`` of query ``hidden`` over ``memory``."""
        energy = ops.sum(memory * hidden[:, None, :], axis=-1)  # [B, N]
        lowest = ops.min(energy)  # any value that a real row's energy is not below
        e_max = ops.max(ops.where(real, energy, lowest), axis=1, keepdims=True)
        shifted = ops.where(real, energy - e_max, 0.0)
        numerator = ops.where(real, ops.exp(shifted), 0.0) * weights
        attention = ops.divide_no_nan(numerator, self._sum_over_set(numerator[..., None], weights))
        return self._sum_over_set(memory * attention[..., None], weights)

    def call(self, inputs):
        features, weights = inputs
        weights = ops.cast(weights, features.dtype)
        memory = ops.matmul(features, self.memory_kernel) + self.memory_bias  # [B, N, u]
        real = weights > 0
        batch = ops.shape(features)[0]
        q_star = ops.zeros((batch, 2 * self.units), dtype=features.dtype)
        cell = ops.zeros((batch, self.units), dtype=features.dtype)
        for _ in range(self.steps):
            hidden, new_cell = self._lstm_step(q_star, cell)
            if self.carry_cell_state:
                cell = new_cell
            q_star = ops.concatenate([hidden, self._attend(memory, hidden, weights, real)], axis=-1)
        return q_star

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], 2 * self.units)

    def _serialize_activation(self, fn):
        """An activation as it appears in ``get_config``."""
        return activations.serialize(fn)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "steps": self.steps,
                "carry_cell_state": self.carry_cell_state,
                "activation": self._serialize_activation(self.activation),
                "recurrent_activation": self._serialize_activation(self.recurrent_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="atomsets_tf")
class WeightedSet2Set(Set2SetCore):
    r"""Attention readout with per-atom weights (eqs. 5-9 of the AtomSets paper).

    :class:`Set2SetCore` with its plain reduction (``set_sum="reduce_sum"``): the
    attention of atom ``i`` is :math:`w_i \exp(e_i) / \sum_j w_j \exp(e_j)`, so
    atom fractions or site occupancies weight the softmax.

    Args:
        units: width of the memories and of the LSTM state.
        steps: number of attention steps ``T`` (the paper uses 3).
        carry_cell_state: whether the LSTM cell state carries from one step to
            the next. ``False`` (the default) re-zeroes it at every step, so only
            the hidden state carries through :math:`q^*`: this is what maml's
            ``WeightedSet2Set`` (the AtomSets paper's code) and megnet's
            ``Set2Set`` compute. ``True`` is the standard LSTM recurrence of
            Vinyals et al. (2016), as in PyTorch Geometric's ``Set2Set``.
        activation: the LSTM's cell activation.
        recurrent_activation: the LSTM's gate activation. The default,
            Keras 2's ``hard_sigmoid`` (``clip(0.2x + 0.5, 0, 1)``), is what maml
            and megnet used; Keras 3's ``"hard_sigmoid"`` is a different function.
        kernel_initializer, recurrent_initializer, bias_initializer: initialisers
            of the memory projection, the LSTM kernel and the biases.
        unit_forget_bias: initialise the forget gate's bias to 1.

    Call arguments:
        inputs: ``[features, weights]``.

    Input shape:
        ``features``: float ``(batch, n_atoms, d)``; ``weights``: float
        ``(batch, n_atoms)``, non-negative, 0 on padding.

    Output shape:
        ``(batch, 2 * units)``, ordered ``[q_T, r_T]``.

    Example:

    >>> import numpy as np
    >>> layer = WeightedSet2Set(units=4, steps=2)
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    >>> w = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], "float32")
    >>> tuple(layer([x, w]).shape)
    (2, 8)
    """

    def __init__(
        self,
        units: int,
        steps: int = 3,
        carry_cell_state: bool = False,
        activation: str = "tanh",
        recurrent_activation: str = "hard_sigmoid_keras2",
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        bias_initializer: str = "zeros",
        unit_forget_bias: bool = True,
        **kwargs,
    ):
        super().__init__(
            units,
            steps=steps,
            carry_cell_state=carry_cell_state,
            activation=activation,
            recurrent_activation=recurrent_activation,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            set_sum="reduce_sum",
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "unit_forget_bias": self.unit_forget_bias})
        return config
