"""Ensembles (one .keras model of K members), their losses, and calibrated uncertainty."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from atomsets_tf.cli import cli
from atomsets_tf.data.io import load
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.evaluation.runners import expected_fingerprint
from atomsets_tf.layers import EnsembleMoments
from atomsets_tf.models import AtomSets
from atomsets_tf.models.ensemble import Ensemble
from atomsets_tf.models.loading import load_model, predict_table, predict_with_std
from atomsets_tf.training.losses import EnsembleLoss
from atomsets_tf.training.metrics import fit_std_scale, spearman, uncertainty_scores
from atomsets_tf.workflows.fit import ModelConfig, TrainingConfig, bootstrap_weights, fit
from tests.test_bad_input import assert_cli_error

BATCH = {"atoms": np.array([[8, 12, 0], [6, 0, 0], [26, 8, 8]], "int32"),
         "weights": np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.4, 0.3, 0.3]], "float32")}


def _members(k: int = 3, **kwargs):
    keras.utils.set_random_seed(1)
    return [AtomSets(embedding_dim=4, units=8, name=f"m{i}", **kwargs) for i in range(k)]


def test_moments_are_numpy_mean_and_population_std():
    outs = [np.random.default_rng(i).normal(size=(5, 1)).astype("float32") for i in range(4)]
    got = np.asarray(EnsembleMoments(std_scale=2.0)(outs))
    stacked = np.concatenate(outs, axis=1)
    np.testing.assert_allclose(got[:, 0], stacked.mean(1), rtol=1e-6)
    np.testing.assert_allclose(got[:, 1], 2.0 * stacked.std(1), rtol=1e-5)


def test_ensemble_saves_as_one_keras_file_and_keeps_its_scale(tmp_path):
    ensemble = Ensemble(_members(3) + [AtomSets(embedding_dim=4, units=8, output="zero-inflated", name="zi")])
    ensemble.std_scale = 1.7
    before = np.asarray(ensemble(BATCH))
    path = tmp_path / "e.keras"
    ensemble.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 4 and loaded.std_scale == pytest.approx(1.7)
    np.testing.assert_allclose(np.asarray(loaded(BATCH)), before, rtol=1e-6)
    assert before.shape == (3, 2 + 1 + 1 + 1 + 3) and loaded.member_widths == (1, 1, 1, 3)


def test_ensemble_loss_is_the_weighted_sum_of_member_maes():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 1)).astype("float32")
    members = rng.normal(size=(6, 3)).astype("float32")
    y_pred = np.concatenate([members.mean(1, keepdims=True), members.std(1, keepdims=True), members], axis=1)
    weights = rng.integers(0, 3, size=(6, 3)).astype("float32")
    loss = EnsembleLoss("mae", (1, 1, 1))
    expected = np.mean(np.sum(np.abs(y - members) * weights, axis=1))
    assert float(loss(np.concatenate([y, weights], axis=1), y_pred)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(y, y_pred)) == pytest.approx(np.mean(np.sum(np.abs(y - members), axis=1)), rel=1e-5)


def test_members_trained_in_one_model_equal_members_trained_alone():
    """Disjoint weights and a summed loss: each member's gradient is its own, so joint training is K runs."""
    members = _members(2)
    alone = [AtomSets.from_config(m.get_config()) for m in members]
    for a, m in zip(alone, members):
        a.set_weights(m.get_weights())
    x = {k: np.tile(v, (4, 1)) for k, v in BATCH.items()}
    y = np.linspace(-1, 1, len(x["atoms"])).astype("float32")
    ensemble = Ensemble(members)
    ensemble.compile(optimizer=keras.optimizers.Adam(1e-2), loss=EnsembleLoss("mae", (1, 1)))
    ensemble.fit(x, y[:, None], batch_size=4, epochs=3, shuffle=False, verbose=0)
    for a in alone:
        a.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
        a.fit(x, y[:, None], batch_size=4, epochs=3, shuffle=False, verbose=0)
    for a, m in zip(alone, members):
        for wa, wm in zip(a.get_weights(), m.get_weights()):
            np.testing.assert_allclose(wa, wm, rtol=1e-4, atol=1e-6)
    assert not np.allclose(members[0].get_weights()[1], members[1].get_weights()[1])


def test_uncertainty_scores_of_calibrated_and_overconfident_errors():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, 20000)
    y = rng.normal(0.0, sigma)
    good = uncertainty_scores(y, np.zeros_like(y), sigma)
    assert good["coverage_1sigma"] == pytest.approx(0.683, abs=0.01)
    assert good["coverage_2sigma"] == pytest.approx(0.954, abs=0.01)
    assert good["miscalibration_area"] < 0.01 and good["spearman_abs_error_std"] > 0.2
    overconfident = uncertainty_scores(y, np.zeros_like(y), sigma / 3)
    assert overconfident["miscalibration_area"] > 0.2 and overconfident["coverage_1sigma"] < 0.4
    assert fit_std_scale(y, np.zeros_like(y), sigma / 3, "likelihood") == pytest.approx(3.0, rel=0.03)
    assert fit_std_scale(y, np.zeros_like(y), sigma / 3) == pytest.approx(3.0, rel=0.06)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)


def test_bootstrap_weights_are_seeded_samples_with_replacement():
    w = bootstrap_weights(50, 3, seed=4)
    assert w.shape == (50, 3) and (w.sum(0) == 50).all()
    assert not np.array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w, bootstrap_weights(50, 3, seed=4))


@pytest.fixture(scope="module")
def steels_ensemble(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens")
    result = fit("matbench_steels", model="atomsets-v0", protocol="matbench", fold=0, progress=False,
                 training=TrainingConfig(epochs=6, patience=6, batch_size=32),
                 model_config=ModelConfig(ensemble=3, bootstrap=True), out_dir=out)
    return out, result


def test_fit_trains_an_ensemble_with_calibrated_std(steels_ensemble):
    out, result = steels_ensemble
    m = result.metrics
    assert m["ensemble"] == 3 and m["output"] == "non-negative" and m["std_scale"] > 0
    assert set(m["uncertainty"]) == {"val_raw", "test_raw", "test"}
    with open(out / "test_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "target", "prediction", "std"] and all(float(r["std"]) > 0 for r in rows)
    ensemble = load_model(out / "model.keras")
    assert isinstance(ensemble, Ensemble) and ensemble.std_scale == pytest.approx(m["std_scale"])
    table = load("matbench_steels").subset(range(20))
    pred, std = predict_with_std(ensemble, table)
    np.testing.assert_allclose(pred, predict_table(ensemble, table), rtol=1e-6)
    members = np.stack([predict_table(member, table) for member in ensemble.members])
    np.testing.assert_allclose(std, members.std(0) * ensemble.std_scale, rtol=1e-5)
    assert (pred >= 0).all()


def test_cli_predict_writes_the_std_of_an_ensemble(steels_ensemble, tmp_path):
    out, _ = steels_ensemble
    result = CliRunner().invoke(cli, ["predict", str(out / "model.keras"), "matbench_steels", "-o",
                                      str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "id,input,prediction,std"


def test_bootstrap_needs_an_ensemble(tmp_path, capsys):
    with pytest.raises(AtomSetsError, match="ensemble >= 2"):
        fit("matbench_steels", model="atomsets-v0", protocol="matbench", progress=False,
            training=TrainingConfig(epochs=1), model_config=ModelConfig(bootstrap=True))
    assert_cli_error(capsys, ["fit", "matbench_steels", "--model", "atomsets-v0", "--protocol", "matbench",
                              "--epochs", "1", "--bootstrap", "-o", tmp_path / "x", "--quiet"], "ensemble >= 2")


def test_the_ensemble_and_output_are_in_the_fingerprint():
    table = load("matbench_steels")
    one = expected_fingerprint(table, "atomsets-v0", model_config=ModelConfig())
    five = expected_fingerprint(table, "atomsets-v0", model_config=ModelConfig(ensemble=5))
    linear = expected_fingerprint(table, "atomsets-v0", model_config=ModelConfig(output="linear"))
    auto = expected_fingerprint(table, "atomsets-v0", model_config=ModelConfig(output="non-negative"))
    assert len({one["hash"], five["hash"], linear["hash"]}) == 3 and auto["hash"] == one["hash"]


def test_retrain_an_atomsets_parent_as_a_bootstrap_ensemble(steels_ensemble, tmp_path, capsys):
    from atomsets_tf.workflows.retrain import retrain  # noqa: PLC0415 (next to the one test that needs it)

    out, _ = steels_ensemble
    parent = load_model(out / "model.keras").members[0]
    result = retrain(parent, "matbench_steels", mode="full", protocol="matbench", progress=False,
                     training=TrainingConfig(epochs=3, patience=3, batch_size=32), ensemble=2, bootstrap=True)
    assert isinstance(result.model, Ensemble) and len(result.model.members) == 2
    assert (result.test_std > 0).all() and "uncertainty" in result.metrics
    assert_cli_error(capsys, ["retrain", "cgat-perovskites", "matbench_steels", "--ensemble", "2",
                              "-o", tmp_path / "m"], "not supported yet")
