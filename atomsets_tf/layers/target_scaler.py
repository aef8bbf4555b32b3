"""Target de-standardisation as a layer, so that it is saved with the model."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="atomsets_tf")
class TargetScaler(keras.layers.Layer):
    """Maps a standardised output back to target units: ``y = x * std + mean``.

    The network itself learns a standardised target; this layer holds the
    training set's mean and standard deviation in its config, so a saved model
    predicts in the target's own units.

    Input and output: float ``[batch, 1]``.

    Args:
        mean: the training targets' mean.
        std: the training targets' standard deviation (must be positive).
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        return inputs * self.std + self.mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config
