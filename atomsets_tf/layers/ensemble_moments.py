"""The mean and spread of an ensemble's member predictions, as a layer."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="atomsets_tf")
class EnsembleMoments(keras.layers.Layer):
    """The mean of the members' predictions and their standard deviation, scaled.

    Each member's output is ``(batch, k)`` with its prediction in column 0
    (further columns, such as a log-std or a two-part head's probability, are
    ignored). The spread is the members' population standard deviation times
    ``std_scale``, a variance rescaling fitted on validation data (1 = none).

    Args:
        std_scale: the factor applied to the members' standard deviation (positive).

    Call arguments:
        inputs: a list of the members' outputs.

    Input shape:
        a list of K float tensors ``(batch, k_i)``.

    Output shape:
        float32 ``(batch, 2)``: the mean prediction and its standard deviation.

    Example:

    >>> import numpy as np
    >>> a, b = np.array([[1.0], [2.0]], "float32"), np.array([[3.0], [2.0]], "float32")
    >>> np.asarray(EnsembleMoments()([a, b])).tolist()
    [[2.0, 1.0], [2.0, 0.0]]
    """

    def __init__(self, std_scale: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._initial_scale = self._checked(std_scale)
        self._scale = None

    @staticmethod
    def _checked(value: float) -> float:
        if not value > 0:
            raise ValueError(f"std_scale must be positive, got {value}")
        return float(value)

    def build(self, input_shape):
        # A variable, not a constant: a compiled call sees a scale fitted after it was traced.
        self._scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(self._initial_scale),
                                      trainable=False, name="std_scale")
        self.built = True

    @property
    def std_scale(self) -> float:
        return self._initial_scale if self._scale is None else float(keras.ops.convert_to_numpy(self._scale))

    @std_scale.setter
    def std_scale(self, value: float) -> None:
        value = self._checked(value)
        self._initial_scale = value
        if self._scale is not None:
            self._scale.assign(value)

    def call(self, inputs):
        predictions = ops.stack([ops.cast(x[:, 0], "float32") for x in inputs], axis=1)
        mean = ops.mean(predictions, axis=1, keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(predictions - mean), axis=1, keepdims=True)) * self._scale
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 2)

    def get_config(self):
        config = super().get_config()
        config["std_scale"] = self.std_scale
        return config
