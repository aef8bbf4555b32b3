"""The AtomSets model: per-atom MLP, weighted readout, MLP, output."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from atomsets_tf import presets
from atomsets_tf.data.elements import check_known
from atomsets_tf.data.targets import OUTPUT_KINDS
from atomsets_tf.layers import TargetScaler, WeightedMeanReadout, WeightedSet2Set, ZeroInflatedOutput
from atomsets_tf.layers import activations as act
from atomsets_tf.models.base import downstream_layers, load_keras_model

READOUTS = ("mean", "set2set")
TASK_TYPES = ("regression", "classification")
#: Rows of the trainable element embedding (atomic numbers 0..94).
N_ELEMENTS = 95


def _check_choices(readout: str | Sequence[str], task_type: str, output: str = "linear") -> list[str]:
    """The readouts as a list, after checking them, ``task_type`` and ``output``."""
    readouts = [readout] if isinstance(readout, str) else list(readout)
    bad = [r for r in readouts if r not in READOUTS]
    if bad or not readouts:
        raise ValueError(f"readout must be one or more of {READOUTS}, got {readout!r}")
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    if output not in OUTPUT_KINDS or (task_type == "classification" and output != "linear"):
        raise ValueError(f"output must be one of {OUTPUT_KINDS} (linear for classification), got {output!r}")
    return readouts


def _atom_inputs(feature_dim, embedding_dim, element_table, trainable_embedding, n_elements):
    """The model's inputs and its per-atom features: the element embedding of ``atoms``, or ``features``."""
    weights_in = keras.Input(shape=(None,), dtype="float32", name="weights")
    if feature_dim is not None:
        features_in = keras.Input(shape=(None, int(feature_dim)), dtype="float32", name="features")
        return {"features": features_in, "weights": weights_in}, features_in
    atoms_in = keras.Input(shape=(None,), dtype="int32", name="atoms")
    initializer = "uniform"
    if element_table is not None:
        table = np.zeros((n_elements, embedding_dim), dtype=np.float32)
        table[: element_table.shape[0]] = element_table
        initializer = keras.initializers.Constant(table)
    x = keras.layers.Embedding(
        n_elements, embedding_dim, embeddings_initializer=initializer,
        trainable=trainable_embedding, name="element_embedding",
    )(atoms_in)
    return {"atoms": atoms_in, "weights": weights_in}, x


def _readouts(x, weights_in, readouts: list[str], set2set_units: int, set2set_steps: int, carry_cell_state: bool):
    """The readouts of the per-atom features ``x``, concatenated when there are several."""
    pooled = []
    for r in readouts:
        if r == "mean":
            pooled.append(WeightedMeanReadout(name="mean_readout")([x, weights_in]))
        else:
            pooled.append(
                WeightedSet2Set(
                    set2set_units, steps=set2set_steps, carry_cell_state=carry_cell_state, name="set2set_readout",
                )([x, weights_in])
            )
    return pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="readout_concat")(pooled)


def _output_layer(h, task_type: str, target_mean: float, target_std: float, output: str = "linear",
                  positive_stats: tuple[float, float, str] = (1.0, 1.0, "median")):
    """The output: a sigmoid probability, or a linear output de-standardised by a :class:`TargetScaler`
    (``non-negative``: then through softplus), or a two-part :class:`ZeroInflatedOutput` (``zero-inflated``).

    The output layers stay float32 under a mixed-precision policy: targets such as yield strengths
    (~1000 MPa) would lose their last digits in (b)float16.
    """
    if task_type == "classification":
        return keras.layers.Dense(1, activation="sigmoid", name="output", dtype="float32")(h)
    if output == "zero-inflated":
        mean, std, combine = positive_stats
        return ZeroInflatedOutput(mean, std, combine, name="output")(h)
    out = keras.layers.Dense(1, name="output", dtype="float32")(h)
    out = TargetScaler(target_mean, target_std, name="target_scaler", dtype="float32")(out)
    if output == "non-negative":
        out = keras.layers.Activation("softplus", name="target_non_negative", dtype="float32")(out)
    return out


@keras.saving.register_keras_serializable(package="atomsets_tf")
class AtomSets(keras.Model):
    """An AtomSets head (Chen & Ong 2021, Fig. 1c), as a Keras functional model.

    ``inputs -> [embedding] -> per-atom MLP -> readout(s) -> MLP -> output``

    Args:
        feature_dim: width of precomputed features; ``None`` means atomic-number
            inputs with an element embedding.
        embedding_dim: width of the element embedding (atomic-number inputs).
        element_table: optional ``(rows, embedding_dim)`` initial embedding,
            e.g. MEGNet's V0 table (AtomSets-V0). Not part of the config: the
            values are saved as weights.
        known_elements: atomic numbers that ``element_table`` covers; inputs
            with other elements are refused by :meth:`check_elements`.
        trainable_embedding: whether the embedding trains. AtomSets trains it;
            AtomSets-V0 keeps the transferred V0 table fixed.
        n_elements: rows of the embedding.
        n_layers_before_readout: Dense layers applied to each atom.
        n_layers_after_readout: Dense layers after the readout.
        units: width of every hidden Dense layer (Table S2: 16-128).
        readout: ``"mean"``, ``"set2set"``, or a list of them (concatenated).
        set2set_units: memory width of ``WeightedSet2Set`` (default ``units``).
        set2set_steps: attention steps of ``WeightedSet2Set``.
        carry_cell_state: see :class:`~atomsets_tf.layers.WeightedSet2Set`.
        activation: hidden activation (Table S2: ``"softplus"``, ``"relu"``).
        dropout: dropout rate after each hidden layer after the readout.
        task_type: ``"regression"`` (linear output) or ``"classification"``
            (sigmoid output).
        output: a regression target's output (:data:`~atomsets_tf.data.targets.OUTPUT_KINDS`): ``"linear"``,
            ``"non-negative"`` (softplus of the de-standardised output, for a target that cannot be
            negative) or ``"zero-inflated"`` (:class:`~atomsets_tf.layers.ZeroInflatedOutput`, for a target
            that is exactly 0 for many entries; the engine trains it with the loss :attr:`loss_kind` names).
        positive_mean, positive_std: the positive training targets' statistics (``"zero-inflated"``).
        zero_combine: how a two-part output combines its parts: ``"median"`` or ``"mean"``.
        target_mean, target_std: the training targets' statistics; the network
            learns the standardised target (regression only).
        feature_source: for precomputed features, where they come from (e.g.
            ``{"model": "atomsets-v1", "source": "megnet-...", "tap": "V1"}``), so
            that the saved model can featurise new structures the same way.

    Call arguments:
        inputs: a dict in the package's padded layout (see
            :mod:`atomsets_tf.data.padding`): ``"atoms"`` (atomic numbers, when
            ``feature_dim`` is ``None``) or ``"features"`` (precomputed per-atom
            features, AtomSets-V1..V3 taps), and ``"weights"`` (atom fractions or
            site occupancies, 0 on padding).
        training: whether dropout is active.

    Input shape:
        ``"atoms"``: int32 ``(batch, n_atoms)``, or ``"features"``: float32
        ``(batch, n_atoms, feature_dim)``; ``"weights"``: float32 ``(batch, n_atoms)``.

    Output shape:
        float32 ``(batch, 1)``: the target in its own units (regression; the
        standardisation is inside the model) or a probability (classification);
        ``(batch, 3)`` for a two-part output (prediction, probability of a positive
        target, magnitude).

    Example:

    >>> import numpy as np
    >>> model = AtomSets(embedding_dim=4, units=8, readout=["mean", "set2set"], target_mean=1.0, target_std=2.0)
    >>> batch = {"atoms": np.array([[8, 12, 0]], "int32"), "weights": np.array([[0.5, 0.5, 0.0]], "float32")}
    >>> tuple(model(batch).shape)
    (1, 1)
    >>> AtomSets.from_config(model.get_config()).count_params() == model.count_params()
    True
    """

    def __init__(
        self,
        feature_dim: int | None = None,
        embedding_dim: int = 32,
        element_table: np.ndarray | None = None,
        trainable_embedding: bool = True,
        known_elements: Sequence[int] | None = None,
        n_elements: int = N_ELEMENTS,
        n_layers_before_readout: int = 2,
        n_layers_after_readout: int = 2,
        units: int = 64,
        readout: str | Sequence[str] = "mean",
        set2set_units: int | None = None,
        set2set_steps: int = 3,
        carry_cell_state: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        task_type: str = "regression",
        target_mean: float = 0.0,
        target_std: float = 1.0,
        feature_source: dict | None = None,
        output: str = "linear",
        positive_mean: float = 1.0,
        positive_std: float = 1.0,
        zero_combine: str = "median",
        **kwargs,
    ):
        readouts = _check_choices(readout, task_type, output)
        if element_table is not None:
            element_table = np.asarray(element_table, dtype=np.float32)
            n_elements = max(n_elements, element_table.shape[0])
            embedding_dim = int(element_table.shape[1])
        inputs, x = _atom_inputs(feature_dim, embedding_dim, element_table, trainable_embedding, n_elements)
        hidden = act.get(activation)
        for k in range(n_layers_before_readout):
            x = keras.layers.Dense(units, activation=hidden, name=f"atom_dense_{k + 1}")(x)
        h = _readouts(x, inputs["weights"], readouts, set2set_units or units, set2set_steps, carry_cell_state)
        for k in range(n_layers_after_readout):
            h = keras.layers.Dense(units, activation=hidden, name=f"head_dense_{k + 1}")(h)
            if dropout:
                h = keras.layers.Dropout(dropout, name=f"head_dropout_{k + 1}")(h)
        out = _output_layer(h, task_type, target_mean, target_std, output, (positive_mean, positive_std, zero_combine))
        super().__init__(inputs=inputs, outputs=out, **kwargs)
        self._readout_name = h._keras_history.operation.name  # where the head starts (see head_layers)
        self._atomsets_config = {
            "feature_dim": None if feature_dim is None else int(feature_dim),
            "embedding_dim": int(embedding_dim),
            "trainable_embedding": bool(trainable_embedding),
            "known_elements": None if known_elements is None else [int(z) for z in known_elements],
            "n_elements": int(n_elements),
            "n_layers_before_readout": int(n_layers_before_readout),
            "n_layers_after_readout": int(n_layers_after_readout),
            "units": int(units),
            "readout": readouts if len(readouts) > 1 else readouts[0],
            "set2set_units": set2set_units,
            "set2set_steps": int(set2set_steps),
            "carry_cell_state": bool(carry_cell_state),
            "activation": activation,
            "dropout": float(dropout),
            "task_type": task_type,
            "target_mean": float(target_mean),
            "target_std": float(target_std),
            "feature_source": None if feature_source is None else dict(feature_source),
            "output": output,
            "positive_mean": float(positive_mean),
            "positive_std": float(positive_std),
            "zero_combine": zero_combine,
        }

    @property
    def task_type(self) -> str:
        return self._atomsets_config["task_type"]

    @property
    def output_kind(self) -> str:
        """The regression output: ``"linear"``, ``"non-negative"`` or ``"zero-inflated"``."""
        return self._atomsets_config["output"]

    @property
    def loss_kind(self) -> str | None:
        """The per-sample loss this model's output needs beyond the engine's (``"zero_inflated"``), or ``None``."""
        return "zero_inflated" if self.output_kind == "zero-inflated" else None

    @property
    def loss_scale(self) -> float:
        """The scale of :attr:`loss_kind`'s magnitude term: the positive training targets' std."""
        return self._atomsets_config["positive_std"]

    @property
    def feature_source(self) -> dict | None:
        return self._atomsets_config["feature_source"]

    @property
    def input_name(self) -> str:
        """``"atoms"`` or ``"features"``: the per-atom input this model takes."""
        return "atoms" if self._atomsets_config["feature_dim"] is None else "features"

    def check_elements(self, atomic_numbers, entry: str = "") -> None:
        """Raise :class:`~atomsets_tf.errors.UnknownElementError` for an element the model has no row for."""
        known = self._atomsets_config["known_elements"]
        n = self._atomsets_config["n_elements"]
        mask = np.zeros(n, dtype=bool)
        mask[known if known is not None else slice(1, n)] = True
        check_known(atomic_numbers, mask, self.name, entry)

    def head_layers(self) -> list:
        """The head that ``head`` transfer mode retrains: every layer after the readout (the MLP after it and the
        output), found by the model's graph."""
        return downstream_layers(self, self.get_layer(self._readout_name))

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._atomsets_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, download: bool = True) -> AtomSets:
        """Load a trained AtomSets preset (see ``atomsets-tf models``; its model card is in ``pretrained/``).

        Raises:
            UnknownPresetError: an unknown name, or a preset that is not an AtomSets model.
        """
        return load_keras_model(presets.preset_file(name, "atomsets", download))
