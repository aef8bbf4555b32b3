"""The scikit-learn bridge (atomsets_tf.ext.sklearn): encoder, AtomSets estimators, pipelines, estimator checks."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.io import Table, load
from atomsets_tf.errors import (
    AtomSetsError,
    CompositionParseError,
    DataFormatError,
    EmptyStructureError,
    InvalidTargetError,
    MissingExtraError,
    UnknownElementError,
)
from atomsets_tf.models.loading import predict_table
from tests._tables import toy_crystals

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

from atomsets_tf.ext.sklearn import (  # noqa: E402
    AtomSetsClassifier,
    AtomSetsRegressor,
    ElementSetEncoder,
    decode_element_sets,
    make_atomsets_pipeline,
)

#: A tiny, fast AtomSets (eager: no tracing for one epoch on a few rows).
TINY = dict(units=4, n_layers_before_readout=1, n_layers_after_readout=1, epochs=1, batch_size=64, random_state=0,
            run_eagerly=True)


@pytest.fixture(scope="module")
def steels():
    table = load("matbench_steels")
    return table.inputs[:60], table.targets[:60]


# ---------------------------------------------------------------------------------------------- the encoder
def test_encoder_layout_for_formulas_structures_and_amounts():
    X = ElementSetEncoder(max_elements=3).fit_transform(["NaCl", "Fe2O3"])
    for row, formula in zip(X, ["NaCl", "Fe2O3"]):
        zs, fractions = composition_to_set(formula)
        np.testing.assert_array_equal(row[: len(zs)], zs)
        np.testing.assert_allclose(row[3 : 3 + len(zs)], fractions)
        assert not row[len(zs) : 3].any() and not row[3 + len(zs) :].any()  # padding: Z 0, weight 0
    atoms, weights = decode_element_sets(X)
    assert atoms.tolist() == [[11, 17, 0], [8, 26, 0]] and np.allclose(weights.sum(axis=1), 1)
    structures = toy_crystals()
    np.testing.assert_array_equal(ElementSetEncoder().fit_transform(structures),
                                  ElementSetEncoder().fit_transform([s.composition for s in structures]))
    amounts = ElementSetEncoder(max_elements=3, elements=["O", "Fe", "Na", "Cl"]).fit_transform(
        np.array([[0.0, 0.0, 1.0, 1.0], [3.0, 2.0, 0.0, 0.0]]))
    np.testing.assert_allclose(amounts, X, rtol=1e-6)
    assert ElementSetEncoder().fit(["NaCl"]).get_feature_names_out()[[0, -1]].tolist() == ["Z_0", "fraction_15"]


def test_encoder_refuses_bad_entries_naming_them():
    encoder = ElementSetEncoder(max_elements=2)
    with pytest.raises(CompositionParseError, match="entry 1: .*Xx"):
        encoder.fit(["NaCl", "Xx2O"])
    with pytest.raises(DataFormatError, match="entry 1: input of type int"):
        encoder.fit(["NaCl", 3])
    with pytest.raises(DataFormatError, match="entry 0 has 3 elements, more than the 2"):
        encoder.fit(["NaClO"])
    with pytest.raises(DataFormatError, match="Negative values.*entry 1: amount -1.0 of He"):
        ElementSetEncoder().fit(np.array([[1.0, 0.0], [1.0, -1.0]]))
    with pytest.raises(EmptyStructureError, match="entry 0: every element amount is 0"):
        ElementSetEncoder().fit(np.zeros((1, 3)))
    with pytest.raises(DataFormatError, match="fitted on materials"):
        ElementSetEncoder().fit(["NaCl"]).transform(np.ones((1, 3)))
    with pytest.raises(DataFormatError, match="entry 0 of the encoded sets has an atomic number"):
        decode_element_sets([[1.5, 1.0]])


# ---------------------------------------------------------------------------------------------- estimators
def test_cross_val_score_on_steels_is_finite(shared, steels):
    X, y = steels
    pipe = make_atomsets_pipeline(units=16, epochs=5, batch_size=16, learning_rate=3e-3, random_state=0,
                                  run_eagerly=True)
    scores = cross_val_score(pipe, X, y, cv=KFold(3, shuffle=True, random_state=0),
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (3,) and np.isfinite(scores).all() and (scores < 0).all()


def test_grid_search_over_two_widths(shared, steels):
    X, y = steels
    search = GridSearchCV(make_atomsets_pipeline(**TINY), {"atomsets__units": [4, 8]}, cv=2,
                          scoring="neg_mean_absolute_error")
    search.fit(X, y)
    assert search.best_params_["atomsets__units"] in (4, 8)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_[-1].model_.get_layer("atomsets").get_config()["units"] == \
        search.best_params_["atomsets__units"]
    table = Table([f"s{i}" for i in range(10)], list(X[:10]), None, "composition")  # the package's own predictions
    np.testing.assert_allclose(predict_table(search.best_estimator_[-1].atomsets_, table), search.predict(X[:10]),
                               rtol=1e-5)


def test_clone_keeps_every_parameter_and_random_state_reproduces(shared, steels):
    regressor = AtomSetsRegressor(units=7, readout=["mean", "set2set"], epochs=2, learning_rate=0.01,
                                  random_state=3, run_eagerly=True)
    copy = clone(regressor)  # Keras' own wrapper clones only model / warm_start / model_kwargs
    assert copy.get_params() == regressor.get_params() and copy is not regressor
    pipe = make_atomsets_pipeline(**TINY).set_params(atomsets__units=6, encoder__max_elements=14)
    assert clone(pipe).get_params()["atomsets__units"] == 6
    assert clone(pipe).get_params()["encoder__max_elements"] == 14
    X, y = steels
    first = clone(pipe).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, clone(pipe).fit(X, y).predict(X))
    assert not np.array_equal(first, clone(pipe).set_params(atomsets__random_state=1).fit(X, y).predict(X))


def test_binary_classifier_and_its_refusals(shared, steels):
    X, y = steels
    labels = np.where(y > np.median(y), "strong", "weak")
    pipe = make_atomsets_pipeline("classification", **TINY).fit(X, labels)
    assert isinstance(pipe[-1], AtomSetsClassifier) and pipe.classes_.tolist() == ["strong", "weak"]
    proba = pipe.predict_proba(X[:8])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(pipe.predict(X[:8]), pipe.classes_[(proba[:, 1] > 0.5).astype(int)])
    with pytest.raises(InvalidTargetError, match="exactly two classes.*3 class"):
        make_atomsets_pipeline("classification", **TINY).fit(X[:6], [0, 1, 2, 0, 1, 2])
    # (the default V0, the formation-energy MEGNet's embedding, knows H..Pu; megnet's JSON table lacks Po)
    with pytest.raises(UnknownElementError, match="element Po in entry 1 is not in the megnet"):
        make_atomsets_pipeline(element_features="megnet", **TINY).fit(["NaCl", "PoO2"], [1.0, 2.0])
    with pytest.raises(AtomSetsError, match="task_type"):
        make_atomsets_pipeline("ranking")


def test_sklearn_absent_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "atomsets_tf.ext.sklearn", raising=False)
    with pytest.raises(MissingExtraError, match=r'atomsets-tf\[sklearn\]') as info:
        importlib.import_module("atomsets_tf.ext.sklearn")
    assert isinstance(info.value, AtomSetsError)


# ---------------------------------------------------------------------------------------------- sklearn's checks
_NO_ATOMS = ("casts random amounts to int (rows of 0) or shifts one feature to a minimum of 0: an entry whose "
             "element amounts are all 0 has no atoms (EmptyStructureError)")
_PIPELINE = "a Pipeline fits its steps in place, so its 'steps' parameter holds fitted estimators after fit"
_BINARY = "multiclass data: AtomSets' classification output is one sigmoid (binary; InvalidTargetError)"
_EXPECTED = {
    "ElementSetEncoder": {"check_estimators_dtypes": _NO_ATOMS, "check_fit2d_1feature": _NO_ATOMS},
    "regression": {"check_estimators_dtypes": _NO_ATOMS, "check_fit2d_1feature": _NO_ATOMS,
                   "check_estimators_overwrite_params": _PIPELINE, "check_dont_overwrite_parameters": _PIPELINE},
    "classification": {
        "check_estimators_dtypes": _NO_ATOMS, "check_fit2d_1feature": _NO_ATOMS,
        "check_decision_proba_consistency": "feeds negative element amounts (ignores the positive_only tag)",
        **dict.fromkeys(["check_fit_score_takes_y", "check_estimators_overwrite_params",
                         "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
                         "check_readonly_memmap_input", "check_n_features_in_after_fitting", "check_dtype_object",
                         "check_f_contiguous_array_estimator", "check_classifiers_classes",
                         "check_classifiers_train", "check_supervised_y_2d", "check_methods_sample_order_invariance",
                         "check_methods_subset_invariance", "check_dict_unchanged", "check_fit2d_predict1d"],
                        _BINARY)},
}


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, ElementSetEncoder):
        return _EXPECTED["ElementSetEncoder"]
    return _EXPECTED["classification" if isinstance(estimator[-1], AtomSetsClassifier) else "regression"]


def _checks():
    """Every check of scikit-learn's suite for the encoder and the two pipelines; those that cannot apply (see
    :data:`_EXPECTED`) are marked skip, not run (xfail would run them: seconds of training each)."""
    # element_features=None: a trainable embedding, so that the checks need no element table file.
    estimators = [ElementSetEncoder(), make_atomsets_pipeline(element_features=None, **TINY),
                  make_atomsets_pipeline("classification", element_features=None, **TINY)]
    for estimator in estimators:
        yield from estimator_checks_generator(estimator, expected_failed_checks=_expected_failures(estimator),
                                              mark="skip")
    for estimator in (AtomSetsRegressor(), AtomSetsClassifier()):  # alone: only the checks that need no X
        for pair in estimator_checks_generator(estimator):
            if getattr(pair[1], "func", pair[1]).__name__ in _API_CHECKS:
                yield pair


#: The checks of an estimator's parameters and construction (they feed no data).
_API_CHECKS = {"check_parameters_default_constructible", "check_no_attributes_set_in_init",
               "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
               "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
               "check_valid_tag_types", "check_estimator_tags_renamed", "check_estimators_unfitted"}


@pytest.mark.parametrize("estimator, check", _checks(), ids=lambda value: _check_id(value))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _check_id(value) -> str:
    if callable(value) and not hasattr(value, "get_params"):
        return getattr(value, "func", value).__name__
    if isinstance(value, ElementSetEncoder):
        return "encoder"
    if isinstance(value, (AtomSetsRegressor, AtomSetsClassifier)):
        return type(value).__name__
    return "classifier" if isinstance(value[-1], AtomSetsClassifier) else "regressor"
