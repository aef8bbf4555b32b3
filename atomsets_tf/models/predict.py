"""Loading saved models and predicting on data tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from atomsets_tf.data.io import Table
from atomsets_tf.errors import AtomSetsError, CheckpointError


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` file saved by atomsets-tf, with Keras' safe mode on.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a Keras model.
    """
    import keras

    import atomsets_tf.layers  # noqa: F401  (registers the serialisable classes)
    import atomsets_tf.models  # noqa: F401
    import atomsets_tf.training.transfer  # noqa: F401  (optimizers a compiled model may carry)

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no such model file: {p}")
    try:
        return keras.saving.load_model(p, safe_mode=True)
    except Exception as exc:  # zip, JSON, h5 and deserialisation errors all mean "not a usable model"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot load {p.name} as a Keras model: {message}") from None


def predict_atomsets(model, table: Table, batch_size: int = 256) -> np.ndarray:
    """Predictions of an :class:`~atomsets_tf.models.AtomSets` for every entry of ``table``.

    A compositional model featurises the compositions itself; a structural one
    taps the MEGNet recorded in its ``feature_source`` (cached).

    Raises:
        UnknownElementError: an entry holds an element the model has no embedding for.
    """
    from atomsets_tf.data.pipeline import compositions_to_sets
    from atomsets_tf.training.features import structural_sets
    from atomsets_tf.training.fit import predict_sets

    if getattr(model, "input_name", None) == "features":
        source = model.feature_source
        if not source:
            raise AtomSetsError("this AtomSets model takes precomputed features and does not record their source")
        return predict_sets(model, structural_sets(source["model"], source["source"], table), batch_size)
    inputs = table.inputs if table.kind == "composition" else [s.composition for s in table.inputs]
    sets = compositions_to_sets(inputs, table.ids)
    for i, zs in zip(table.ids, sets.values):
        model.check_elements(zs, i)
    return predict_sets(model, sets, batch_size)
