"""scikit-learn estimators for AtomSets (``pip install "atomsets-tf[sklearn]"``).

scikit-learn and Keras 3's own wrappers (``keras.wrappers.SKLearnRegressor`` /
``SKLearnClassifier``) take numeric 2-D arrays, so a material goes through two steps:

1. :class:`ElementSetEncoder` (a transformer) turns compositions (formula strings, pymatgen
   ``Composition``), structures (pymatgen ``Structure`` or ASE ``Atoms``: their composition) or a numeric
   matrix of element amounts into a fixed-width array: for each entry, the atomic numbers of its
   elements then their atom fractions (``k`` of each), padded with atomic number 0 and weight 0;
2. :class:`AtomSetsRegressor` / :class:`AtomSetsClassifier` (Keras' wrappers) build an
   :class:`~atomsets_tf.models.AtomSets` model on that layout: a :class:`ElementSetInputs` layer decodes
   the array into the package's weighted sets (``atoms``, ``weights``), the element features are the V0
   table (the formation-energy MEGNet's embedding by default, kept fixed: AtomSets-V0) and the readout is the paper's
   weighted mean (or set2set).

:func:`make_atomsets_pipeline` chains them, so that ``cross_val_score``, ``GridSearchCV`` (parameters
``atomsets__units``, ``atomsets__epochs``, ...) and ``Pipeline`` work on a list of formula strings.

Example:

>>> from sklearn.model_selection import cross_val_score
>>> from atomsets_tf.data.io import load
>>> table = load("matbench_steels")
>>> pipe = make_atomsets_pipeline(units=8, epochs=2, random_state=0)
>>> scores = cross_val_score(pipe, table.inputs[:40], table.targets[:40], cv=2)  # doctest: +SKIP
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import numpy as np

from atomsets_tf.data.elements import ELEMENT_SYMBOLS, ElementTable, atomic_numbers_of, check_known
from atomsets_tf.data.inputs import as_table
from atomsets_tf.errors import (
    AtomSetsError,
    DataFormatError,
    EmptyStructureError,
    InvalidTargetError,
    MissingExtraError,
)
from atomsets_tf.models.atomsets.builder import ModelConfig, build_model, element_table_of
from atomsets_tf.models.atomsets.element_sources import DEFAULT_V0_SOURCES
from atomsets_tf.models.atomsets.features import composition_sets
from atomsets_tf.models.atomsets.model import N_ELEMENTS, AtomSets

try:  # optional dependency: the extra atomsets-tf[sklearn]
    import sklearn  # noqa: F401  (first: a blocked sklearn is refused even with its submodules loaded)
    from keras.wrappers import SKLearnClassifier, SKLearnRegressor
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.pipeline import Pipeline
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:
    raise MissingExtraError(
        f'atomsets_tf.ext.sklearn needs scikit-learn: pip install "atomsets-tf[sklearn]" ({exc})') from None

__all__ = ["AtomSetsClassifier", "AtomSetsRegressor", "ElementSetEncoder", "ElementSetInputs",
           "decode_element_sets", "make_atomsets_pipeline"]


#: The encoder's width ``k`` for materials, unless ``max_elements`` or a wider training entry says otherwise
#: (steels hold up to 13 elements; padding costs little).
DEFAULT_MAX_ELEMENTS = 16


# ---------------------------------------------------------------------------------------------- encoding
def _material_sets(materials: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(atomic_numbers, fractions)`` of each material: the package's weighted sets of compositions
    (:func:`~atomsets_tf.models.atomsets.features.composition_sets`; a structure's own composition, site
    occupancies summed per element)."""
    sets = composition_sets(as_table(list(materials), source="X"))
    return list(zip(sets.values, sets.weights))


def _amount_sets(amounts: np.ndarray, atomic_numbers: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sets of a non-negative matrix of element amounts (one column per element of ``atomic_numbers``)."""
    if (amounts < 0).any():
        row, col = np.argwhere(amounts < 0)[0]
        raise DataFormatError(f"Negative values in data passed to ElementSetEncoder: entry {row}: amount "
                              f"{amounts[row, col]} of "
                              f"{ELEMENT_SYMBOLS[atomic_numbers[col]]} (column {col})")
    sets = []
    for row, values in enumerate(amounts):
        present = np.flatnonzero(values > 0)
        if not len(present):
            raise EmptyStructureError(f"entry {row}: every element amount is 0 (no atoms)")
        order = present[np.argsort(atomic_numbers[present], kind="stable")]
        fractions = values[order] / values[order].sum()
        sets.append((atomic_numbers[order].astype(np.int32), fractions.astype(np.float32)))
    return sets


def _is_amount_matrix(X) -> bool:
    """Whether ``X`` is a matrix of element amounts (2-D: numbers, several columns, or sparse) rather than a list
    of materials (1-D, or one column of formula strings / Compositions / Structures)."""
    if hasattr(X, "tocsr") or hasattr(X, "format") and hasattr(X, "nnz"):  # scipy sparse: refused as amounts
        return True
    if hasattr(X, "columns") and hasattr(X, "dtypes"):  # a pandas DataFrame
        X = X.to_numpy()
    elif isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], (list, tuple, np.ndarray)):  # rows
        X = np.asarray(X, dtype=object)
    elif not isinstance(X, (list, tuple, np.ndarray)) and hasattr(X, "__array__"):
        X = np.asarray(X)
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        return False
    if X.dtype.kind in "biufc" or X.shape[1] > 1:
        return True
    return len(X) > 0 and isinstance(X[0, 0], numbers.Number)


def _materials(X) -> list:
    """A list of materials from a list, a Series, a 1-D array or a one-column 2-D array / DataFrame."""
    if hasattr(X, "columns"):  # a pandas DataFrame of one column of materials
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__") or (isinstance(X, np.ndarray) and X.ndim != 1):
        raise DataFormatError("X must be a list of materials (formula strings, Compositions, Structures) or a "
                              f"2-D numeric matrix of element amounts, got {type(X).__name__}"
                              f"{'' if not isinstance(X, np.ndarray) else f' of shape {X.shape}'}")
    return list(X)


def encode_element_sets(sets: Sequence[tuple[np.ndarray, np.ndarray]], max_elements: int) -> np.ndarray:
    """The encoder's layout: float64 ``(n, 2 * max_elements)``, atomic numbers then fractions, padded with 0.

    Raises:
        DataFormatError: an entry with more than ``max_elements`` elements (naming it).
    """
    out = np.zeros((len(sets), 2 * max_elements), dtype=np.float64)
    for row, (zs, fractions) in enumerate(sets):
        if len(zs) > max_elements:
            raise DataFormatError(f"entry {row} has {len(zs)} elements, more than the {max_elements} the encoder "
                                  "was fitted for: set ElementSetEncoder(max_elements=...)")
        out[row, : len(zs)] = zs
        out[row, max_elements : max_elements + len(zs)] = fractions
    return out


def decode_element_sets(X) -> tuple[np.ndarray, np.ndarray]:
    """``(atoms, weights)`` of an array in the encoder's layout, checked (the inverse of the encoding).

    Returns:
        int32 ``(n, k)`` atomic numbers (0 on padding) and float32 ``(n, k)`` weights (0 on padding).

    Raises:
        DataFormatError: an odd width, atomic numbers that are not integers in 0..94, negative or non-finite
            weights, or an element of weight > 0 with atomic number 0, naming the entry.
        EmptyStructureError: an entry whose weights are all 0.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] % 2 or not X.shape[1]:
        raise DataFormatError(f"expected ElementSetEncoder's layout (n, 2 k): atomic numbers then fractions, got "
                              f"shape {X.shape}")
    k = X.shape[1] // 2
    zs, weights = X[:, :k], X[:, k:]
    checks = (
        (~np.isfinite(X).all(axis=1), "holds a non-finite value"),
        (((zs != np.round(zs)) | (zs < 0) | (zs >= N_ELEMENTS)).any(axis=1),
         f"has an atomic number that is not an integer in 1..{N_ELEMENTS - 1}"),
        ((weights < 0).any(axis=1), "has a negative fraction"),
        (((zs == 0) & (weights > 0)).any(axis=1), "has a fraction > 0 for atomic number 0 (padding)"),
    )
    for bad, why in checks:
        if bad.any():
            raise DataFormatError(f"entry {int(np.flatnonzero(bad)[0])} of the encoded sets {why} "
                                  "(expected ElementSetEncoder's layout)")
    empty = weights.sum(axis=1) <= 0
    if empty.any():
        raise EmptyStructureError(f"entry {int(np.flatnonzero(empty)[0])} of the encoded sets has no atoms")
    return zs.astype(np.int32), weights.astype(np.float32)


class ElementSetEncoder(TransformerMixin, BaseEstimator):
    """Materials → fixed-width numeric arrays of weighted element sets (the input of the AtomSets estimators).

    Each row is ``[Z_1 .. Z_k, x_1 .. x_k]``: the atomic numbers of the entry's elements (ascending) and their
    atom fractions (summing to 1), padded with ``Z = 0``, ``x = 0``.

    Args:
        max_elements: ``k``, the most elements of one entry; ``None`` (default): the number of columns of an
            amount matrix, else :data:`DEFAULT_MAX_ELEMENTS` or the most elements of any entry seen in ``fit``
            if more (a fixed default, so that every fold of a cross-validation encodes alike). An entry with
            more elements than ``k`` is refused in ``transform``.
        elements: for a numeric input, the element symbol of each column; ``None``: column ``j`` is element
            ``Z = j + 1`` (H, He, Li, ...).

    Input:
        ``X`` is a list (or Series, or 1-D / one-column array) of materials: formula strings such as
        ``"Fe0.7Cr0.2Ni0.1"``, pymatgen ``Composition`` objects, or structures (pymatgen ``Structure`` or ASE ``Atoms``: their composition); or a
        numeric 2-D matrix of non-negative element amounts (rows are entries, columns elements; normalised).

    Raises:
        CompositionParseError, EmptyStructureError, DataFormatError: an entry that is not a material, does not
            parse, has no atoms, a negative amount, or more elements than ``k``; the message names the entry.

    Example:

    >>> ElementSetEncoder(max_elements=2).fit_transform(["NaCl", "Fe2O3"]).round(3).tolist()
    [[11.0, 17.0, 0.5, 0.5], [8.0, 26.0, 0.6, 0.4]]
    """

    def __init__(self, max_elements: int | None = None, elements: Sequence[str] | None = None):
        self.max_elements = max_elements
        self.elements = elements

    def _sets(self, X, reset: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        if reset:
            self.input_kind_ = "amounts" if _is_amount_matrix(X) else "materials"
        if self.input_kind_ == "materials":
            if _is_amount_matrix(X):
                raise DataFormatError("this encoder was fitted on materials, not on a matrix of element amounts")
            return _material_sets(_materials(X))
        try:
            amounts = validate_data(self, X, reset=reset, dtype=np.float64)
        except ValueError as exc:
            raise DataFormatError(str(exc)) from None
        if self.elements is None:
            columns = np.arange(1, amounts.shape[1] + 1)
            if len(columns) >= len(ELEMENT_SYMBOLS):
                raise DataFormatError(f"{amounts.shape[1]} amount columns, but there are {len(ELEMENT_SYMBOLS) - 1}"
                                      " elements: name the columns with ElementSetEncoder(elements=[...])")
        else:
            columns = atomic_numbers_of(list(self.elements), "ElementSetEncoder(elements=...)")
            if len(columns) != amounts.shape[1]:
                raise DataFormatError(f"{amounts.shape[1]} amount columns for {len(columns)} elements")
        return _amount_sets(amounts, columns)

    def fit(self, X, y=None) -> ElementSetEncoder:
        """Learn the width ``k`` (see ``max_elements``) and the kind of input; returns ``self``."""
        sets = self._sets(X, reset=True)
        if not sets:
            raise DataFormatError("X holds no entries")
        if self.max_elements is not None and int(self.max_elements) < 1:
            raise DataFormatError(f"max_elements must be at least 1, got {self.max_elements}")
        if self.max_elements is not None:
            self.max_elements_ = int(self.max_elements)
        elif self.input_kind_ == "amounts":
            self.max_elements_ = int(self.n_features_in_)
        else:
            self.max_elements_ = max(DEFAULT_MAX_ELEMENTS, *(len(zs) for zs, _ in sets))
        encode_element_sets(sets, self.max_elements_)  # an entry wider than max_elements is refused now
        return self

    def transform(self, X) -> np.ndarray:
        """The encoded sets: float64 ``(n, 2 * k)``."""
        check_is_fitted(self, "max_elements_")
        return encode_element_sets(self._sets(X, reset=False), self.max_elements_)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``Z_0 .. Z_{k-1}, fraction_0 .. fraction_{k-1}``."""
        check_is_fitted(self, "max_elements_")
        k = self.max_elements_
        return np.array([f"Z_{i}" for i in range(k)] + [f"fraction_{i}" for i in range(k)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # a numeric input holds element amounts
        tags.input_tags.string = True  # formula strings
        return tags


# ---------------------------------------------------------------------------------------------- the model
@keras.saving.register_keras_serializable(package="atomsets_tf")
class ElementSetInputs(keras.layers.Layer):
    """Decodes :class:`ElementSetEncoder`'s layout into the AtomSets inputs ``{"atoms", "weights"}``.

    Args:
        max_elements: ``k``, half the width of the encoded rows.
        **kwargs: standard Keras layer arguments.

    Input shape:
        float ``(batch, 2 * k)``: atomic numbers then fractions.

    Output shape:
        ``{"atoms": int32 (batch, k), "weights": float32 (batch, k)}``.
    """

    def __init__(self, max_elements: int, **kwargs):
        super().__init__(**kwargs)
        self.max_elements = int(max_elements)

    def call(self, inputs):
        k = self.max_elements
        atoms = keras.ops.cast(keras.ops.round(inputs[:, :k]), "int32")
        return {"atoms": atoms, "weights": keras.ops.cast(inputs[:, k:], "float32")}

    def compute_output_spec(self, inputs):
        batch = inputs.shape[0]
        return {"atoms": keras.KerasTensor((batch, self.max_elements), "int32"),
                "weights": keras.KerasTensor((batch, self.max_elements), "float32")}

    def get_config(self):
        return {**super().get_config(), "max_elements": self.max_elements}


def _element_table(sources: tuple[str, ...]) -> ElementTable:
    """The V0 table of ``sources`` (the builder's, read once per process)."""
    return element_table_of("atomsets-v0", None, list(sources))


def _sources(element_features) -> tuple[str, ...] | None:
    if element_features is None:
        return None
    return (element_features,) if isinstance(element_features, str) else tuple(element_features)


class _AtomSetsEstimator:
    """What the AtomSets regressor and classifier share (placed before Keras' wrapper in their bases).

    Args:
        element_features: the V0 element table: by default the paper's V0, the formation-energy MEGNet's embedding
            (``DEFAULT_V0_SOURCES``); ``"megnet"`` (megnet's 16-wide JSON table), ``"matscholar"``, a MEGNet preset,
            or a list of them (concatenated; see
            :mod:`~atomsets_tf.models.atomsets.element_sources`); kept fixed (AtomSets-V0). ``None``: a trainable
            embedding of width ``embedding_dim`` (AtomSets).
        embedding_dim: width of the trainable embedding (``element_features=None`` only).
        units: width of every hidden Dense layer.
        readout: ``"mean"`` (the weighted mean, eq. 4), ``"set2set"``, or both (a list).
        n_layers_before_readout, n_layers_after_readout: Dense layers per element, and after the readout.
        activation: hidden activation.
        epochs, batch_size, learning_rate: training by Adam.
        random_state: seed of the weights' initialisation and of the shuffling (``keras.utils.set_random_seed``,
            which seeds Python's, NumPy's and TensorFlow's global generators); ``None``: not seeded.
        verbose: Keras' ``fit`` / ``predict`` verbosity.
        run_eagerly: Keras' ``run_eagerly``: no ``tf.function`` tracing, which is faster for a few epochs on
            tiny data (tests, quick searches) and slower otherwise.
    """

    def __init__(self, element_features: str | Sequence[str] | None = DEFAULT_V0_SOURCES, embedding_dim: int = 16,
                 units: int = 32, readout: str | Sequence[str] = "mean", n_layers_before_readout: int = 2,
                 n_layers_after_readout: int = 2, activation: str = "relu", epochs: int = 100,
                 batch_size: int = 32, learning_rate: float = 1e-3, random_state: int | None = None,
                 verbose: int = 0, run_eagerly: bool = False):
        self.element_features = element_features
        self.embedding_dim = embedding_dim
        self.units = units
        self.readout = readout
        self.n_layers_before_readout = n_layers_before_readout
        self.n_layers_after_readout = n_layers_after_readout
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.run_eagerly = run_eagerly

    def __sklearn_clone__(self):  # Keras' wrapper rebuilds only model/warm_start/model_kwargs; clone every param
        return BaseEstimator.__sklearn_clone__(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    def _checked_sets(self, X) -> np.ndarray:
        """``X`` in the encoder's layout, checked (and its elements against the V0 table)."""
        atoms, _ = decode_element_sets(X)
        sources = _sources(self.element_features)
        known = _element_table(sources).known if sources else np.arange(N_ELEMENTS) > 0
        for row, zs in enumerate(atoms):
            check_known(zs[zs > 0], known, "V0" if sources is None else " + ".join(sources), f"entry {row}")
        return np.asarray(X, dtype=np.float32)

    def _atomsets(self, task_type: str, y: np.ndarray) -> AtomSets:
        """The AtomSets head, built by the one AtomSets builder (:func:`~atomsets_tf.models.atomsets.builder.build_model`,
        as :func:`~atomsets_tf.workflows.fit.fit` builds it): AtomSets-V0 on a fixed table, or a trainable
        embedding."""
        sources = _sources(self.element_features)
        config = ModelConfig(n_layers_before_readout=self.n_layers_before_readout,
                             n_layers_after_readout=self.n_layers_after_readout, units=self.units,
                             readout=self.readout, activation=self.activation, embedding_dim=self.embedding_dim)
        return build_model("atomsets-v0" if sources else "atomsets", task_type, np.asarray(y, dtype=np.float64),
                           _element_table(sources) if sources else None, config, name="atomsets")

    def _get_model(self, X, y):
        """The Keras model: :class:`ElementSetInputs` then :class:`~atomsets_tf.models.AtomSets`, compiled."""
        inputs = keras.Input((X.shape[1],), dtype="float32", name="element_sets")
        head = self._atomsets(self._task_type, y)
        model = keras.Model(inputs, head(ElementSetInputs(X.shape[1] // 2, name="element_set_inputs")(inputs)),
                            name="atomsets_estimator")
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss=self._loss,
                      run_eagerly=bool(self.run_eagerly))
        return model

    def fit(self, X, y, **kwargs):
        """Fit on ``X`` in :class:`ElementSetEncoder`'s layout; ``kwargs`` go to Keras' ``fit``. Returns ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=self._task_type == "regression")
        X = self._checked_sets(X)
        target = self._process_target(y, reset=True)
        if self.random_state is not None:
            keras.utils.set_random_seed(int(self.random_state))
        model = self._get_model(X, target)
        self.history_ = model.fit(X, target, epochs=self.epochs, batch_size=self.batch_size, verbose=self.verbose,
                                  **kwargs).history
        self.model_ = model
        return self

    def _raw_predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = self._checked_sets(validate_data(self, X, reset=False, dtype=np.float64))
        if not self.run_eagerly:
            return np.asarray(self.model_.predict(X, batch_size=self.batch_size, verbose=self.verbose))
        batches = range(0, len(X), max(int(self.batch_size), 1))  # eager: call the model, skip predict's set-up
        return np.concatenate([np.asarray(self.model_(X[i : i + self.batch_size], training=False)) for i in batches])

    @property
    def atomsets_(self) -> AtomSets:
        """The fitted :class:`~atomsets_tf.models.AtomSets` inside :attr:`model_` (inputs ``atoms``, ``weights``):
        the package's own model, for :func:`~atomsets_tf.models.loading.predict_table` or ``save``."""
        check_is_fitted(self, "model_")
        return self.model_.get_layer("atomsets")

    def predict(self, X) -> np.ndarray:
        """Predictions for ``X`` in :class:`ElementSetEncoder`'s layout."""
        return self._reverse_process_target(self._raw_predict(X))


class AtomSetsRegressor(_AtomSetsEstimator, SKLearnRegressor):
    __doc__ = ("An AtomSets regressor (Keras' ``SKLearnRegressor``) on :class:`ElementSetEncoder`'s layout; the "
               "network learns the standardised target (mean absolute error loss).\n\n    "
               + _AtomSetsEstimator.__doc__.split("\n\n", 1)[1])
    _task_type = "regression"
    _loss = "mae"

    def _process_target(self, y, reset=False):
        if np.ndim(y) == 2 and np.shape(y)[1] != 1:
            raise InvalidTargetError(f"AtomSetsRegressor predicts one target, got y of shape {np.shape(y)}")
        return super()._process_target(np.asarray(y, dtype=np.float32), reset=reset)


class AtomSetsClassifier(_AtomSetsEstimator, SKLearnClassifier):
    __doc__ = ("A binary AtomSets classifier (Keras' ``SKLearnClassifier``) on :class:`ElementSetEncoder`'s "
               "layout: a sigmoid output, binary cross-entropy; ``predict_proba`` gives both classes.\n\n    "
               + _AtomSetsEstimator.__doc__.split("\n\n", 1)[1])
    _task_type = "classification"
    _loss = "binary_crossentropy"

    def _process_target(self, y, reset=False):
        check_classification_targets(y)
        classes = np.unique(y)
        if reset:
            if len(classes) != 2:
                raise InvalidTargetError(f"AtomSetsClassifier needs exactly two classes (its output is one "
                                         f"sigmoid), got {len(classes)} class(es): {classes.tolist()[:5]}")
            self.classes_ = classes
        return (np.asarray(y) == self.classes_[1]).astype(np.float32)[:, None]

    def _reverse_process_target(self, y):
        return self.classes_[(np.asarray(y)[:, 0] > 0.5).astype(np.int64)]

    def predict_proba(self, X) -> np.ndarray:
        """The probability of each class (``classes_`` order): float ``(n, 2)``."""
        p = self._raw_predict(X)[:, :1].astype(np.float64)
        return np.hstack([1.0 - p, p])

    def decision_function(self, X) -> np.ndarray:
        """The probability of ``classes_[1]``: float ``(n,)``."""
        return self._raw_predict(X)[:, 0].astype(np.float64)


class AtomSetsPipeline(Pipeline):
    """A scikit-learn ``Pipeline`` whose tags say what its first step accepts (formula strings, non-negative
    element amounts): what :func:`make_atomsets_pipeline` returns."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            first = self.steps[0][1].__sklearn_tags__().input_tags
            tags.input_tags.positive_only, tags.input_tags.string = first.positive_only, first.string
        except (AttributeError, IndexError, TypeError):  # steps not (yet) a list of (name, estimator)
            pass
        return tags


def make_atomsets_pipeline(task_type: str = "regression", max_elements: int | None = None,
                           elements: Sequence[str] | None = None, **params) -> AtomSetsPipeline:
    """``Pipeline([("encoder", ElementSetEncoder(...)), ("atomsets", AtomSetsRegressor(**params))])``.

    Args:
        task_type: ``"regression"`` (:class:`AtomSetsRegressor`) or ``"classification"``
            (:class:`AtomSetsClassifier`).
        max_elements, elements: the encoder's (see :class:`ElementSetEncoder`).
        **params: the estimator's (``units``, ``readout``, ``epochs``, ...); tune them as ``atomsets__<name>``.

    Returns:
        An :class:`AtomSetsPipeline` that fits a list of formula strings (or structures) and targets.

    Raises:
        AtomSetsError: an unknown ``task_type``.
    """
    estimators = {"regression": AtomSetsRegressor, "classification": AtomSetsClassifier}
    if task_type not in estimators:
        raise AtomSetsError(f"task_type must be one of {', '.join(estimators)}, got {task_type!r}")
    return AtomSetsPipeline([("encoder", ElementSetEncoder(max_elements=max_elements, elements=elements)),
                             ("atomsets", estimators[task_type](**params))])
