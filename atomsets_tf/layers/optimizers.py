"""Optimizers whose learning rate is lower for the pretrained part of a model (``full`` transfer mode).

They are registered Keras objects: a model saved while compiled with one carries it,
so they live beside the layers, where loading a ``.keras`` file finds them.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras


class _PartRateMixin:
    """Scales the learning rate of some variables (the pretrained part) by a constant factor."""

    def _init_part_rate(self, backbone_paths: Iterable[str], backbone_lr_factor: float) -> None:
        self.backbone_paths = sorted(set(backbone_paths))
        self.backbone_lr_factor = float(backbone_lr_factor)
        self._factors = None

    def build(self, var_list):
        super().build(var_list)
        paths = set(self.backbone_paths)
        self._factors = [self.backbone_lr_factor if v.path in paths else 1.0 for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors[self._get_variable_index(variable)]
        if factor == 1.0:
            return super().update_step(gradient, variable, learning_rate)
        if factor == 0.0:
            return None  # frozen at this rate: no update at all
        return super().update_step(gradient, variable, learning_rate * factor)

    def _part_rate_config(self) -> dict:
        return {"backbone_paths": self.backbone_paths, "backbone_lr_factor": self.backbone_lr_factor}


@keras.saving.register_keras_serializable(package="atomsets_tf")
class PartRateAdam(_PartRateMixin, keras.optimizers.Adam):
    """Adam whose learning rate is ``backbone_lr_factor`` times lower for ``backbone_paths``."""

    def __init__(self, backbone_paths=(), backbone_lr_factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._init_part_rate(backbone_paths, backbone_lr_factor)

    def get_config(self):
        return {**super().get_config(), **self._part_rate_config()}


@keras.saving.register_keras_serializable(package="atomsets_tf")
class PartRateAdamW(_PartRateMixin, keras.optimizers.AdamW):
    """AdamW whose learning rate is ``backbone_lr_factor`` times lower for ``backbone_paths``."""

    def __init__(self, backbone_paths=(), backbone_lr_factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._init_part_rate(backbone_paths, backbone_lr_factor)

    def get_config(self):
        return {**super().get_config(), **self._part_rate_config()}
