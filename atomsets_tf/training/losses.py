"""Losses of the training engine beyond Keras' own (``"mae"``, ``"mse"``)."""

from __future__ import annotations

import math

import keras
from keras import ops

#: Regression losses the engine accepts; ``robust_l1`` needs a model with a log-std output (CGAT).
REGRESSION_LOSSES = ("mae", "mse", "robust_l1")


@keras.saving.register_keras_serializable(package="atomsets_tf")
def robust_l1(y_true, y_pred):
    r"""CGAT's robust L1 loss (a Lorentzian likelihood with a learned per-sample uncertainty).

    ``y_pred`` is ``[batch, 2]``: the predicted value :math:`\mu` and its log-std
    :math:`s`, both in the target's units; the loss is the mean of
    :math:`\sqrt{2}\,|y - \mu|\,e^{-s} + s`.
    """
    y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
    mu, log_std = y_pred[:, 0], y_pred[:, 1]
    return ops.mean(math.sqrt(2.0) * ops.abs(y_true - mu) * ops.exp(-log_std) + log_std)
