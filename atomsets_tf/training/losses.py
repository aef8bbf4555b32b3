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


#: The per-sample losses an :class:`EnsembleLoss` applies to each member (``zero_inflated``: a two-part head).
MEMBER_LOSSES = ("mae", "mse", "binary_crossentropy", "zero_inflated")
_EPS = 1e-7


def _per_sample(kind: str, y, out, scale: float):
    """The per-sample loss ``kind`` of one model's output ``out`` (``[batch, k]``) for targets ``y`` (``[batch]``)."""
    if kind == "mae":
        return ops.abs(y - out[:, 0])
    if kind == "mse":
        return ops.square(y - out[:, 0])
    if kind == "binary_crossentropy":
        p = ops.clip(out[:, 0], _EPS, 1.0 - _EPS)
        return -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
    if kind == "zero_inflated":
        positive = ops.cast(y > 0, out.dtype)
        p = ops.clip(out[:, 1], _EPS, 1.0 - _EPS)
        bce = -(positive * ops.log(p) + (1.0 - positive) * ops.log(1.0 - p))
        return bce + positive * ops.abs(y - out[:, 2]) / scale
    raise ValueError(f"member loss must be one of {MEMBER_LOSSES}, got {kind!r}")


@keras.saving.register_keras_serializable(package="atomsets_tf")
class ZeroInflatedLoss(keras.losses.Loss):
    r"""The loss of a two-part head (:class:`~atomsets_tf.layers.ZeroInflatedOutput`).

    ``y_pred`` is ``[batch, 3]``: the prediction (not used), :math:`p` (the
    probability of a positive target) and the magnitude :math:`m`. Per sample
    the loss is the binary cross-entropy of :math:`p` against :math:`[y > 0]`
    plus, for positive targets only, :math:`|y - m| / s`, with :math:`s` the
    positive training targets' standard deviation, so that both parts are
    unitless.

    Args:
        scale: :math:`s` (positive).
    """

    def __init__(self, scale: float = 1.0, name: str = "zero_inflated", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = float(scale)

    def call(self, y_true, y_pred):
        y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
        return _per_sample("zero_inflated", y, y_pred, self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="atomsets_tf")
class EnsembleLoss(keras.losses.Loss):
    """The sum over an ensemble's members of each member's own loss, trained in one model.

    ``y_pred`` is ``[batch, 2 + sum(widths)]``, an
    :class:`~atomsets_tf.models.ensemble.Ensemble`'s output: the mean, the std, then
    each member's output (``widths[k]`` columns). ``y_true`` is ``[batch, 1]`` (the
    target) or ``[batch, 1 + K]``: the target and, per member, the weight of the
    entry in that member's training set (its multiplicity in a bootstrap sample).

    Args:
        member_loss: one of :data:`MEMBER_LOSSES`.
        widths: the number of output columns of each member.
        scale: the scale of a ``zero_inflated`` member loss.
    """

    def __init__(self, member_loss: str = "mae", widths: tuple[int, ...] = (1,), scale: float = 1.0,
                 name: str = "ensemble", **kwargs):
        super().__init__(name=name, **kwargs)
        if member_loss not in MEMBER_LOSSES:
            raise ValueError(f"member_loss must be one of {MEMBER_LOSSES}, got {member_loss!r}")
        self.member_loss, self.widths, self.scale = member_loss, tuple(int(w) for w in widths), float(scale)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        y = y_true[:, 0]
        total, start = 0.0, 2
        for k, width in enumerate(self.widths):
            member = _per_sample(self.member_loss, y, y_pred[:, start:start + width], self.scale)
            if y_true.shape[-1] is not None and y_true.shape[-1] > 1:
                member = member * y_true[:, 1 + k]
            total = total + member
            start += width
        return total

    def get_config(self):
        return {**super().get_config(), "member_loss": self.member_loss, "widths": list(self.widths),
                "scale": self.scale}
