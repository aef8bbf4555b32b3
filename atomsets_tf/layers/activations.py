"""Activation functions with the exact definitions the reference codes used.

Keras 3 changed ``hard_sigmoid``: Keras 2 (and so megnet and maml) computed
``clip(0.2 x + 0.5, 0, 1)``; Keras 3 computes ``relu6(x + 3) / 6``. Models
ported from Keras 2 must use :func:`hard_sigmoid_keras2`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

_LOG2 = math.log(2.0)


@keras.saving.register_keras_serializable(package="atomsets_tf")
def softplus2(x):
    """megnet's shifted softplus, ``softplus(x) - ln 2`` (so that ``softplus2(0) = 0``).

    Computed as ``relu(x) + log(0.5 exp(-|x|) + 0.5)``, megnet's stable form.
    """
    return ops.relu(x) + ops.log(0.5 * ops.exp(-ops.abs(x)) + 0.5)


@keras.saving.register_keras_serializable(package="atomsets_tf")
def hard_sigmoid_keras2(x):
    """Keras 2's ``hard_sigmoid``: ``clip(0.2 x + 0.5, 0, 1)``."""
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


_CUSTOM = {"softplus2": softplus2, "hard_sigmoid_keras2": hard_sigmoid_keras2}


def get(identifier):
    """Resolve an activation name, including this module's, to a callable."""
    if isinstance(identifier, str) and identifier in _CUSTOM:
        return _CUSTOM[identifier]
    return keras.activations.get(identifier)


def serialize(fn) -> str | dict:
    """The name of an activation, for ``get_config``."""
    for name, f in _CUSTOM.items():
        if fn is f:
            return name
    return keras.activations.serialize(fn)
