"""Outputs that respect the physics: non-negative targets, and the two-part head of band gaps."""

from __future__ import annotations

import numpy as np
import pytest

from atomsets_tf.data.io import load
from atomsets_tf.data.targets import check_output_kind, task_output_kind
from atomsets_tf.errors import AtomSetsError, DataFormatError
from atomsets_tf.layers import ZeroInflatedOutput
from atomsets_tf.models import AtomSets
from atomsets_tf.training.losses import ZeroInflatedLoss
from atomsets_tf.workflows.fit import ModelConfig, TrainingConfig, fit, resolve_output

BATCH = {"atoms": np.array([[8, 12, 0], [6, 0, 0], [26, 8, 8]], "int32"),
         "weights": np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.4, 0.3, 0.3]], "float32")}


def test_task_metadata_names_the_output():
    assert task_output_kind("matbench_steels") == "non-negative"
    assert task_output_kind("matbench_expt_gap", zero_inflated=True) == "zero-inflated"
    assert task_output_kind("matbench_expt_gap", zero_inflated=False) == "non-negative"
    assert task_output_kind("matbench_steels", zero_inflated=True) == "non-negative"
    assert task_output_kind("matbench_mp_gap") == "zero-inflated" and task_output_kind("matbench_expt_gap") == "non-negative"
    assert task_output_kind("matbench_mp_e_form") == "linear" and task_output_kind(None) == "linear"


def test_negative_targets_refuse_a_non_negative_output():
    with pytest.raises(DataFormatError, match="entry #1"):
        check_output_kind("non-negative", np.array([0.5, -0.1, 2.0]), "x.csv")
    with pytest.raises(DataFormatError, match="zero and positive"):
        check_output_kind("zero-inflated", np.array([0.5, 1.0]))
    with pytest.raises(DataFormatError, match="output must be one of"):
        check_output_kind("positive")


def test_non_negative_output_never_goes_below_zero():
    model = AtomSets(embedding_dim=4, units=8, output="non-negative", target_mean=-50.0, target_std=10.0)
    linear = AtomSets(embedding_dim=4, units=8, target_mean=-50.0, target_std=10.0)
    linear.set_weights(model.get_weights())
    assert (np.asarray(model(BATCH)) >= 0).all() and (np.asarray(linear(BATCH)) < 0).all()


@pytest.mark.parametrize("combine", ["median", "mean"])
def test_zero_inflated_output_combines_probability_and_magnitude(combine):
    layer = ZeroInflatedOutput(positive_mean=2.0, positive_std=1.0, combine=combine)
    out = np.asarray(layer(np.random.default_rng(0).normal(size=(64, 8)).astype("float32")))
    prediction, p, m = out.T
    assert (m > 0).all() and ((p > 0) & (p < 1)).all()
    expected = np.where(p >= 0.5, m, 0.0) if combine == "median" else p * m
    np.testing.assert_allclose(prediction, expected, rtol=1e-6)


def test_zero_inflated_loss_is_cross_entropy_plus_scaled_error_of_positives():
    y = np.array([[0.0], [2.0], [0.0], [1.0]], "float32")
    p = np.array([0.2, 0.9, 0.6, 0.3], "float32")
    m = np.array([1.0, 2.5, 0.5, 2.0], "float32")
    y_pred = np.stack([np.zeros(4, "float32"), p, m], axis=1)
    positive = y[:, 0] > 0
    bce = -(positive * np.log(p) + (~positive) * np.log(1 - p))
    expected = np.mean(bce + positive * np.abs(y[:, 0] - m) / 2.0)
    assert float(ZeroInflatedLoss(scale=2.0)(y, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_resolve_output_reads_the_task_and_refuses_it_for_classification():
    gap = load("matbench_steels")
    assert resolve_output(gap, "regression", None, gap.targets) == "non-negative"
    assert resolve_output(gap, "regression", "linear", gap.targets) == "linear"
    with pytest.raises(AtomSetsError, match="classification"):
        resolve_output(gap, "classification", "non-negative", gap.targets)


def test_a_zero_inflated_model_trains_saves_and_predicts_no_negative_gap(tmp_path, shared):
    table = load("matbench_expt_gap").subset(range(400))
    result = fit(table, model="atomsets-v0", progress=False, out_dir=tmp_path,
                 model_config=ModelConfig(output="zero-inflated"),
                 training=TrainingConfig(epochs=3, patience=3, batch_size=64))
    assert result.metrics["output"] == "zero-inflated"
    assert (result.test_predictions >= 0).all()
    from atomsets_tf.models.loading import load_model, predict_table  # noqa: PLC0415 (after training, as a user)

    reloaded = load_model(tmp_path / "model.keras")
    assert reloaded.output_kind == "zero-inflated"
    np.testing.assert_allclose(predict_table(reloaded, table.subset(range(50))),
                               predict_table(result.model, table.subset(range(50))), rtol=1e-6)
    linear = fit(table, model="atomsets-v0", progress=False, model_config=ModelConfig(output="linear"),
                 training=TrainingConfig(epochs=1, patience=1, batch_size=64))
    assert linear.metrics["output"] == "linear"
