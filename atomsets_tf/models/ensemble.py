"""Ensembles: K trained models of one family as one Keras model, whose members' spread is an uncertainty.

:class:`Ensemble` saves as one ``.keras`` file; its family (:data:`FAMILY`, in the registry as ``"ensemble"``)
predicts a table through the members' own family, so an ensemble of AtomSets, MEGNet or CGAT models reads
whatever its members read.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from atomsets_tf import presets
from atomsets_tf.data.io import Table
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.layers import EnsembleMoments
from atomsets_tf.models.base import ModelFamily, load_keras_model
from atomsets_tf.models.registry import family_of, register_family

__all__ = ["FAMILY", "Ensemble", "EnsembleFamily"]


def _member(model_or_config):
    """A member model (a config from :meth:`Ensemble.get_config` is deserialised; Keras' safe mode applies)."""
    if isinstance(model_or_config, keras.Model):
        return model_or_config
    return keras.saving.deserialize_keras_object(model_or_config)


@keras.saving.register_keras_serializable(package="atomsets_tf")
class Ensemble(keras.Model):
    """K models with the same inputs, averaged; their standard deviation is the prediction's uncertainty.

    Args:
        members: the K trained models (each ``(batch, k)`` with its prediction in column 0; a probability for
            a classifier), or their serialised configs.
        std_scale: the factor that rescales the members' spread into a calibrated standard deviation, fitted
            on validation data (:func:`~atomsets_tf.training.metrics.fit_std_scale`); 1 = the raw spread.

    Call arguments:
        inputs: what every member takes (e.g. AtomSets' ``{"atoms", "weights"}``).
        training: passed to every member (dropout).

    Input shape:
        the members' input shapes.

    Output shape:
        float32 ``(batch, 2 + sum(k))``: the mean prediction, its standard deviation, then each member's own
        output (what :class:`~atomsets_tf.training.losses.EnsembleLoss` trains the members on).

    Example:

    >>> import numpy as np
    >>> from atomsets_tf.models import AtomSets
    >>> ensemble = Ensemble([AtomSets(embedding_dim=4, units=8, name=f"m{k}") for k in range(3)])
    >>> batch = {"atoms": np.array([[8, 12, 0]], "int32"), "weights": np.array([[0.5, 0.5, 0.0]], "float32")}
    >>> tuple(ensemble(batch).shape)
    (1, 5)
    """

    def __init__(self, members: Sequence, std_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = [_member(m) for m in members]
        self.moments = EnsembleMoments(std_scale, name="ensemble_moments")

    def build(self, input_shape=None):
        self.built = True  # the members are built functional models; the moments have no weights

    @property
    def std_scale(self) -> float:
        return self.moments.std_scale

    @std_scale.setter
    def std_scale(self, value: float) -> None:
        self.moments.std_scale = value

    @property
    def member_widths(self) -> tuple[int, ...]:
        """The number of output columns of each member."""
        return tuple(int(m.outputs[0].shape[-1]) if getattr(m, "outputs", None) else 1 for m in self.members)

    @property
    def task_type(self) -> str:
        return getattr(self.members[0], "task_type", "regression")

    def call(self, inputs, training=None):
        outputs = [ops.cast(m(inputs, training=training), "float32") for m in self.members]
        outputs = [ops.reshape(o, (-1, 1)) if len(o.shape) == 1 else o for o in outputs]
        return ops.concatenate([self.moments(outputs), *outputs], axis=-1)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "std_scale": self.std_scale,
                "members": [keras.saving.serialize_keras_object(m) for m in self.members]}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, download: bool = True) -> Ensemble:
        """Load a trained ensemble preset (see ``atomsets-tf models``)."""
        return load_keras_model(presets.preset_file(name, "ensemble", download))


class EnsembleFamily(ModelFamily):
    """Ensembles of any family's models: predictions and their spread go through the members' family."""

    name = "ensemble"
    model_class = Ensemble
    retrains_as_ensemble = False

    def from_preset(self, name: str) -> Ensemble:
        return Ensemble.from_preset(name)

    def member_family(self, model: Ensemble) -> ModelFamily:
        return family_of(model.members[0])

    def examples_in_memory(self, source: Ensemble, table: Table):
        """The examples its members read (they share their inputs)."""
        return self.member_family(source).examples(source.members[0], table)

    def predict_table(self, model, table: Table, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        return self.predict_with_std(model, table, batch_size, progress)[0]

    def predict_with_std(self, model, table: Table, batch_size: int | None = None,
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        owner = self.member_family(model)
        members = np.stack([owner.predict_table(m, table, batch_size, progress) for m in model.members])
        return members.mean(0), members.std(0) * model.std_scale

    def tap_names(self, model) -> list[str]:
        return []

    def tap_table(self, model, table: Table, names: Sequence[str], batch_size: int | None = None,
                  progress: bool = False) -> dict:
        raise AtomSetsError("an ensemble has no taps of its own: tap one of its members")

    def describe(self, model) -> str:
        owner = self.member_family(model)
        lines = [f"Ensemble {model.name!r}: {len(model.members)} {owner.name} members, std_scale "
                 f"{model.std_scale:.4g}"]
        lines += [f"--- member {k}: {m.name}\n{owner.describe(m)}" for k, m in enumerate(model.members)]
        return "\n".join(lines)

    def transfer_copy(self, parent, task_type: str, train_targets: np.ndarray, mode: str,
                      with_log_std: bool = False):
        raise AtomSetsError("an ensemble is retrained member by member: retrain its members")


FAMILY = register_family(EnsembleFamily())
