"""Target de-standardisation as a layer, so that it is saved with the model."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="atomsets_tf")
class TargetScaler(keras.layers.Layer):
    """Maps a standardised output back to target units: ``y = x * std + mean``.

    The network itself learns a standardised target; this layer holds the
    training set's mean and standard deviation in its config, so a saved model
    predicts in the target's own units. An extensive target
    (``is_intensive=False``, megnet's ``StandardScaler`` for extensive targets,
    which scales per atom) is further multiplied by the number of atoms:
    ``y = n_atoms * (x * std + mean)``.

    Args:
        mean: the training targets' mean.
        std: the training targets' standard deviation (must be positive).
        is_intensive: whether the target is intensive. It appears in the config
            only when ``False``, so an intensive scaler's config is unchanged from
            earlier versions.

    Call arguments:
        inputs: ``x``, or ``[x, atom_mask]``, where ``atom_mask``'s count of
            positive entries per row is ``n_atoms``. An extensive scaler needs the
            mask; an intensive one ignores it.

    Input shape:
        ``x``: float ``(batch, k)``; ``atom_mask``: ``(batch, n_atoms)``.

    Output shape:
        ``(batch, k)``.

    Example:

    >>> import numpy as np
    >>> np.asarray(TargetScaler(mean=1.0, std=2.0)(np.array([[0.5]], "float32"))).tolist()
    [[2.0]]
    >>> mask = np.array([[1.0, 1.0, 1.0, 0.0]], "float32")
    >>> extensive = TargetScaler(mean=1.0, std=2.0, is_intensive=False)
    >>> np.asarray(extensive([np.array([[0.5]], "float32"), mask])).tolist()
    [[6.0]]
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, is_intensive: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean = float(mean)
        self.std = float(std)
        self.is_intensive = bool(is_intensive)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        with_mask = isinstance(inputs, (list, tuple))
        raw = inputs[0] if with_mask else inputs
        out = raw * self.std + self.mean
        if not self.is_intensive:
            if not with_mask:
                raise ValueError("an extensive TargetScaler is called on [x, atom_mask]")
            n_atoms = ops.sum(ops.cast(inputs[1] > 0, raw.dtype), axis=1, keepdims=True)
            out = out * n_atoms
        return out

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list) or (isinstance(input_shape, tuple) and isinstance(input_shape[0], tuple)):
            return input_shape[0]
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        if not self.is_intensive:
            config["is_intensive"] = False
        return config
