"""Transfer modes of the CGAT paper: from scratch, only the regression head, full fine-tuning.

* :attr:`TransferMode.SCRATCH`: the same architecture with fresh weights.
* :attr:`TransferMode.HEAD`: only the regression head trains; the rest of the
  network (the feature extractor) keeps its pretrained weights bit for bit.
* :attr:`TransferMode.FULL`: every weight trains, the pretrained part
  optionally at a lower learning rate (``backbone_lr_factor``).

A model's head is named by a predicate on its layers (see :func:`apply_mode`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import keras

from atomsets_tf.errors import AtomSetsError
from atomsets_tf.layers.optimizers import PartRateAdam, PartRateAdamW


class TransferMode(str, enum.Enum):
    """How a pretrained model is retrained on new data."""

    SCRATCH = "scratch"
    HEAD = "head"
    FULL = "full"

    @classmethod
    def parse(cls, value: str | TransferMode) -> TransferMode:
        try:
            return cls(value)
        except ValueError:
            raise AtomSetsError(f"transfer mode must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


def reinitialize(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with the same architecture and freshly initialised weights."""
    return keras.models.clone_model(model)


def apply_mode(model: keras.Model, mode: TransferMode | str, is_head: Callable[[keras.layers.Layer], bool]):
    """Set which layers train for ``mode``; returns the model to train (a fresh copy for ``scratch``).

    Args:
        model: the pretrained model.
        mode: a :class:`TransferMode`.
        is_head: tells whether a layer belongs to the regression head.
    """
    mode = TransferMode.parse(mode)
    if mode is TransferMode.SCRATCH:
        model = reinitialize(model)
    for layer in model.layers:
        layer.trainable = True if mode is not TransferMode.HEAD else bool(is_head(layer))
    return model


def backbone_variable_paths(model: keras.Model, is_head: Callable[[keras.layers.Layer], bool]) -> list[str]:
    """Paths of the trainable variables outside the head (the pretrained feature extractor)."""
    return [v.path for layer in model.layers if not is_head(layer) for v in layer.trainable_weights]


OPTIMIZERS = ("adam", "adamw")


def make_optimizer(
    name: str = "adam",
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-6,
    backbone_paths: Iterable[str] = (),
    backbone_lr_factor: float = 1.0,
):
    """Adam or AdamW (the CGAT paper's), with an optional lower rate for the pretrained part.

    Without a lower rate this is Keras' own optimizer, so a saved model loads
    anywhere; with one, the ``PartRate`` variant (registered, serialisable).
    """
    backbone_paths = list(backbone_paths)
    if backbone_lr_factor == 1.0 or not backbone_paths:
        if name == "adam":
            return keras.optimizers.Adam(learning_rate=learning_rate)
        if name == "adamw":
            return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return PartRateAdam(backbone_paths, backbone_lr_factor, learning_rate=learning_rate)
    if name == "adamw":
        return PartRateAdamW(backbone_paths, backbone_lr_factor, learning_rate=learning_rate, weight_decay=weight_decay)
    raise AtomSetsError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
