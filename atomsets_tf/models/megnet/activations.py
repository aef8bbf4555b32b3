"""Activations of the published megnet models, with their Keras 2 definitions.

* ``softplus2(x) = relu(x) + log(0.5 exp(-|x|) + 0.5)``, i.e. ``softplus(x) - ln 2``,
  megnet's activation for every hidden Dense layer and inside the graph blocks.
* ``hard_sigmoid_keras2(x) = clip(0.2 x + 0.5, 0, 1)``: Keras 2's ``hard_sigmoid``,
  the recurrent (gate) activation of megnet's Set2Set. Keras 3's ``"hard_sigmoid"``
  is ``relu6(x + 3) / 6`` and would move predictions by up to 0.2.

Both are registered with Keras (package ``atomsets_tf``), so models using them
save and load as ``.keras`` files with ``safe_mode=True``. The package has one
definition of each, in :mod:`atomsets_tf.layers.activations`; this module
re-exports them and maps the activation names found in megnet checkpoints
(Keras 2 spellings) to callables through an allow-list.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from atomsets_tf.layers.activations import hard_sigmoid_keras2, softplus2

__all__ = ["softplus2", "hard_sigmoid_keras2", "KERAS2_ACTIVATIONS", "keras2_activation"]

#: Activation names that may appear in a megnet checkpoint's Keras 2 config,
#: mapped to the Keras 3 identifier with the same definition. Keras 2's
#: ``hard_sigmoid`` maps to :func:`hard_sigmoid_keras2`, not to Keras 3's.
KERAS2_ACTIVATIONS: dict[str | None, str | Callable] = {
    None: "linear",
    "linear": "linear",
    "softplus2": softplus2,
    "softplus": "softplus",  # log(1 + e^x) in both versions
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",  # 1 / (1 + e^-x) in both versions
    "hard_sigmoid": hard_sigmoid_keras2,
    "swish": "silu",
    "elu": "elu",
    "selu": "selu",
}


def keras2_activation(name: str | None) -> str | Callable:
    """The Keras 3 activation with the definition Keras 2 gave ``name``.

    Raises:
        KeyError: a name outside the allow-list :data:`KERAS2_ACTIVATIONS`.
    """
    if name not in KERAS2_ACTIVATIONS:
        raise KeyError(
            f"activation {name!r} is not one megnet checkpoints use (known: {sorted(map(str, KERAS2_ACTIVATIONS))})"
        )
    return KERAS2_ACTIVATIONS[name]


def serialize_activation(fn: str | Callable) -> str | dict:
    """Serialise an activation for ``get_config``."""
    if isinstance(fn, str):
        return fn
    return keras.activations.serialize(fn)
