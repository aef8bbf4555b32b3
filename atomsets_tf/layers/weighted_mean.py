"""Weighted mean readout (AtomSets paper, eq. 4)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="atomsets_tf")
class WeightedMeanReadout(keras.layers.Layer):
    r"""Weighted mean over the atoms of each example (eq. 4).

    .. math:: \bar{x} = \frac{\sum_i w_i x_i}{\sum_i w_i}

    An example whose weights are all 0 gives zeros. The result is invariant to
    permuting atoms, to padding rows, to splitting an atom of weight ``w`` into
    copies that sum to ``w``, and to scaling all weights by a constant.

    Args:
        **kwargs: standard Keras layer arguments (``name``, ``dtype``...); the
            layer has no weights and no options.

    Call arguments:
        inputs: ``[features, weights]``; ``weights`` are atom fractions or site
            occupancies, 0 marking a padding row.

    Input shape:
        ``features``: float ``(batch, n_atoms, d)``; ``weights``: float ``(batch, n_atoms)``.

    Output shape:
        ``(batch, d)``.

    Example:

    >>> import numpy as np
    >>> x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], "float32")
    >>> w = np.array([[0.75, 0.25, 0.0]], "float32")
    >>> np.asarray(WeightedMeanReadout()([x, w])).tolist()
    [[1.5, 3.0]]
    """

    def build(self, input_shape):
        features_shape, weights_shape = input_shape
        if len(features_shape) != 3 or len(weights_shape) != 2:
            raise ValueError(
                "WeightedMeanReadout expects [features (batch, n_atoms, d), weights (batch, n_atoms)], "
                f"got shapes {features_shape} and {weights_shape}"
            )
        self.built = True

    def call(self, inputs):
        features, weights = inputs
        weights = ops.cast(weights, features.dtype)
        total = ops.sum(weights, axis=1, keepdims=True)
        weighted = ops.sum(features * weights[:, :, None], axis=1)
        return ops.divide_no_nan(weighted, total)

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        return super().get_config()
