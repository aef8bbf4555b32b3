"""A two-part output for targets that are exactly 0 for many entries: band gaps, where metals sit at 0."""

from __future__ import annotations

import keras
from keras import ops

COMBINE_RULES = ("median", "mean")


@keras.saving.register_keras_serializable(package="atomsets_tf")
class ZeroInflatedOutput(keras.layers.Layer):
    """A probability that the target is positive and a positive magnitude, combined into one prediction.

    Two linear units read the hidden vector ``h``: a logit, whose sigmoid is
    :math:`p`, the probability that the target is above 0, and a raw magnitude,
    de-standardised with the positive training targets' statistics and passed
    through softplus, so that the magnitude :math:`m` is positive. The
    prediction is

    * ``combine="median"``: :math:`m` where :math:`p \\ge 0.5`, else 0 (the median
      of the two-part distribution when the magnitude's spread is small: what the
      MAE rewards);
    * ``combine="mean"``: :math:`p\\,m`, the expected value.

    Either way it is never negative. Train it with
    :class:`~atomsets_tf.training.losses.ZeroInflatedLoss`, which reads the
    second and third output columns.

    Args:
        positive_mean: mean of the positive training targets.
        positive_std: their standard deviation (positive).
        combine: ``"median"`` or ``"mean"`` (see above).

    Call arguments:
        inputs: the hidden vector ``h``.

    Input shape:
        float ``(batch, d)``.

    Output shape:
        float32 ``(batch, 3)``: the prediction, :math:`p` and :math:`m`, in the target's units.

    Example:

    >>> import numpy as np
    >>> layer = ZeroInflatedOutput(positive_mean=2.0, positive_std=1.0)
    >>> out = np.asarray(layer(np.ones((4, 8), "float32")))
    >>> out.shape, bool((out >= 0).all()), bool(((out[:, 1] >= 0) & (out[:, 1] <= 1)).all())
    ((4, 3), True, True)
    """

    def __init__(self, positive_mean: float = 1.0, positive_std: float = 1.0, combine: str = "median", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not positive_std > 0:
            raise ValueError(f"positive_std must be positive, got {positive_std}")
        if combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
        self.positive_mean = float(positive_mean)
        self.positive_std = float(positive_std)
        self.combine = combine
        self.logit = keras.layers.Dense(1, name="positive_logit", dtype="float32")
        self.magnitude = keras.layers.Dense(1, name="magnitude", dtype="float32")

    def build(self, input_shape):
        self.logit.build(input_shape)
        self.magnitude.build(input_shape)
        self.built = True

    def call(self, inputs):
        h = ops.cast(inputs, "float32")
        p = ops.sigmoid(self.logit(h))
        m = ops.softplus(self.magnitude(h) * self.positive_std + self.positive_mean)
        if self.combine == "median":
            prediction = ops.where(p >= 0.5, m, ops.zeros_like(m))
        else:
            prediction = p * m
        return ops.concatenate([prediction, p, m], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3)

    def get_config(self):
        config = super().get_config()
        config.update({"positive_mean": self.positive_mean, "positive_std": self.positive_std,
                       "combine": self.combine})
        return config
