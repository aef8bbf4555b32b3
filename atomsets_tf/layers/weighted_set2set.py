"""Weighted set2set readout (AtomSets paper, eqs. 5-9)."""

from __future__ import annotations

import keras
from keras import ops

from atomsets_tf.layers import activations


@keras.saving.register_keras_serializable(package="atomsets_tf")
class WeightedSet2Set(keras.layers.Layer):
    r"""Attention readout with per-atom weights (eqs. 5-9 of the AtomSets paper).

    The layer projects atoms to memories :math:`m_i = x_i W + b`, starts from
    :math:`q^*_0 = 0` and repeats ``steps`` times:

    .. math::
        q_t = \mathrm{LSTM}(q^*_{t-1}),\quad
        e_{i,t} = m_i \cdot q_t,\quad
        a_{i,t} = \frac{w_i \exp(e_{i,t})}{\sum_j w_j \exp(e_{j,t})},\quad
        r_t = \sum_i a_{i,t} m_i,\quad
        q^*_t = q_t \oplus r_t

    The LSTM's only input is :math:`q^*_{t-1}` (one kernel of shape
    ``(2 units, 4 units)``, gates in Keras order i, f, c, o). The softmax is
    stabilised by subtracting each example's maximum over its real atoms.

    Called on ``[features, weights]``:

    * ``features``: float ``[batch, n_atoms, d]``;
    * ``weights``: float ``[batch, n_atoms]``, non-negative; 0 marks padding.

    Returns ``[batch, 2 * units]``, ordered ``[q_T, r_T]``.

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
        super().__init__(**kwargs)
        if units < 1 or steps < 1:
            raise ValueError(f"units and steps must be positive, got units={units}, steps={steps}")
        self.units = int(units)
        self.steps = int(steps)
        self.carry_cell_state = bool(carry_cell_state)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape):
        features_shape, weights_shape = input_shape
        if len(features_shape) != 3 or len(weights_shape) != 2:
            raise ValueError(
                "WeightedSet2Set expects [features (batch, n_atoms, d), weights (batch, n_atoms)], "
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

    def call(self, inputs):
        features, weights = inputs
        weights = ops.cast(weights, features.dtype)
        u = self.units
        memory = ops.matmul(features, self.memory_kernel) + self.memory_bias  # [B, N, u]
        real = weights > 0
        batch = ops.shape(features)[0]
        q_star = ops.zeros((batch, 2 * u), dtype=features.dtype)
        cell = ops.zeros((batch, u), dtype=features.dtype)
        for _ in range(self.steps):
            z = ops.matmul(q_star, self.recurrent_kernel) + self.recurrent_bias
            gate_i = self.recurrent_activation(z[:, :u])
            gate_f = self.recurrent_activation(z[:, u : 2 * u])
            candidate = self.activation(z[:, 2 * u : 3 * u])
            gate_o = self.recurrent_activation(z[:, 3 * u :])
            new_cell = gate_f * cell + gate_i * candidate
            hidden = gate_o * self.activation(new_cell)
            if self.carry_cell_state:
                cell = new_cell
            energy = ops.sum(memory * hidden[:, None, :], axis=-1)  # [B, N]
            lowest = ops.min(energy)  # any value that a real atom's energy is not below
            e_max = ops.max(ops.where(real, energy, lowest), axis=1, keepdims=True)
            shifted = ops.where(real, energy - e_max, 0.0)
            numerator = ops.where(real, ops.exp(shifted), 0.0) * weights
            attention = ops.divide_no_nan(numerator, ops.sum(numerator, axis=1, keepdims=True))
            readout = ops.sum(attention[:, :, None] * memory, axis=1)
            q_star = ops.concatenate([hidden, readout], axis=-1)
        return q_star

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], 2 * self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "steps": self.steps,
                "carry_cell_state": self.carry_cell_state,
                "activation": activations.serialize(self.activation),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config
