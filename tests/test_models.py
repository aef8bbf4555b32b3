"""The AtomSets model and its training."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from atomsets_tf.data.io import Table, load
from atomsets_tf.models import AtomSets
from atomsets_tf.models.base import load_keras_model
from atomsets_tf.models.loading import predict_table
from atomsets_tf.training.metrics import mae, roc_auc
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
from tests._tables import learnable_table

X = {
    "atoms": np.array([[26, 6, 0, 0], [8, 1, 1, 0]], "int32"),
    "weights": np.array([[0.5, 0.5, 0, 0], [0.4, 0.3, 0.3, 0]], "float32"),
}


@pytest.mark.parametrize("readout", ["mean", "set2set", ["mean", "set2set"]])
@pytest.mark.parametrize("task_type", ["regression", "classification"])
def test_atomsets_round_trip(tmp_path, readout, task_type):
    model = AtomSets(readout=readout, task_type=task_type, target_mean=3.0, target_std=2.0, units=16,
                     activation="softplus")
    y = np.asarray(model(X))
    if task_type == "classification":
        assert ((y > 0) & (y < 1)).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded, AtomSets) and loaded.task_type == task_type
    np.testing.assert_allclose(np.asarray(loaded(X)), y, rtol=1e-6)


def test_target_scaler_and_frozen_v0_table():
    table = np.random.default_rng(0).normal(size=(90, 16)).astype(np.float32)
    model = AtomSets(element_table=table, trainable_embedding=False, known_elements=[1, 6, 8, 26],
                     target_mean=100.0, target_std=10.0)
    emb = model.get_layer("element_embedding")
    assert not emb.trainable and emb.output_dim == 16
    np.testing.assert_array_equal(np.asarray(emb.embeddings)[:90], table)
    assert abs(float(np.asarray(model(X)).mean()) - 100.0) < 30.0  # output is de-standardised
    model.check_elements([1, 8, 26])
    from atomsets_tf.errors import UnknownElementError

    with pytest.raises(UnknownElementError, match="element Na"):
        model.check_elements([11])


def test_padded_features_input():
    model = AtomSets(feature_dim=5, readout="set2set", units=8)
    feats = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    w = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    out = np.asarray(model({"features": feats, "weights": w}))
    feats2 = feats.copy()
    feats2[w == 0] = 1e3  # padding content is irrelevant
    np.testing.assert_allclose(np.asarray(model({"features": feats2, "weights": w})), out, rtol=1e-5)


def test_metrics():
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)  # ties count half
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def small_steels(n=80) -> Table:
    return load("matbench_steels").subset(np.arange(n))


@pytest.mark.parametrize("model_name", ["atomsets", "atomsets-v0"])
def test_fit_learns_and_writes_outputs(tmp_path, shared, model_name):
    table = learnable_table()
    result = fit(table, model_name, training=TrainingConfig(epochs=60, patience=60, batch_size=16),
                 model_config=ModelConfig(units=32), out_dir=tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["epochs_run"] == 60 and m["n_test"] == 12 and m["resumed_from_epoch"] == 0
    # Better than predicting the training mean on the test set (the dummy baseline).
    y = table.targets
    test_idx = [table.ids.index(i) for i in result.test_ids]
    train_idx = [i for i in range(len(table)) if i not in test_idx]
    dummy = mae(y[test_idx], np.full(len(test_idx), y[train_idx].mean()))
    assert m["test_mae"] < 0.5 * dummy
    loaded = load_keras_model(tmp_path / "model.keras")
    pred = predict_table(loaded, table.subset(test_idx))
    np.testing.assert_allclose(pred, result.test_predictions, rtol=1e-5)
    assert not (tmp_path / ".training_state").exists()


def test_fit_classification_on_official_fold(tmp_path, shared):
    table = load("matbench_expt_is_metal")
    result = fit(table, "atomsets", protocol="matbench", fold=1,
                 training=TrainingConfig(epochs=3, patience=3, batch_size=256), progress=False)
    assert result.metrics["task_type"] == "classification"
    assert result.metrics["n_test"] == 984 and 0.5 < result.metrics["test_roc_auc"] <= 1.0


def test_v0_embedding_stays_fixed(tmp_path, shared):
    table = small_steels(40)
    result = fit(table, "atomsets-v0", training=TrainingConfig(epochs=3, patience=3, batch_size=8),
                 model_config=ModelConfig(units=8), progress=False)
    from atomsets_tf.models.atomsets.element_sources import DEFAULT_V0_SOURCES, element_features_table

    emb = np.asarray(result.model.get_layer("element_embedding").embeddings)
    ref = element_features_table(list(DEFAULT_V0_SOURCES)).table  # the default V0, kept fixed through training
    np.testing.assert_array_equal(emb[: len(ref)], ref)


def test_v0_from_the_parent_checkpoint(shared):
    from atomsets_tf.models.megnet.model import load_megnet

    preset = "megnet-mp-2019.4.1-formation_energy"
    result = fit(small_steels(40), "atomsets-v0", features_from=preset,
                 training=TrainingConfig(epochs=2, patience=2, batch_size=8), model_config=ModelConfig(units=8),
                 progress=False)
    emb = np.asarray(result.model.get_layer("element_embedding").embeddings)
    table = load_megnet(preset).embedding_table()
    np.testing.assert_array_equal(emb[: len(table)], table)


def test_schedules():
    from atomsets_tf.errors import AtomSetsError
    from atomsets_tf.training.schedules import lr_factor

    cyc = [lr_factor("cyclical", e, 390, period=130) for e in range(0, 261)]
    assert cyc[0] == pytest.approx(0.1) and cyc[65] == pytest.approx(1.0) and cyc[130] == pytest.approx(0.1)
    assert cyc[195] == pytest.approx(1.0) and min(cyc) >= 0.1 - 1e-12 and max(cyc) <= 1.0 + 1e-12
    assert lr_factor("cosine", 0, 11) == 1.0 and lr_factor("cosine", 10, 11) == pytest.approx(0.1)
    with pytest.raises(AtomSetsError):
        lr_factor("triangle", 0, 10)


def test_cyclical_schedule_and_mixed_precision_in_training(tmp_path):
    import keras

    result = fit(learnable_table(64), "atomsets", training=TrainingConfig(
        epochs=6, patience=6, batch_size=16, schedule="cyclical", schedule_period=4, mixed_precision="mixed_bfloat16"),
        model_config=ModelConfig(units=16), out_dir=tmp_path, progress=False)
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert result.model.get_layer("atom_dense_1").compute_dtype == "bfloat16"
    assert result.model.get_layer("target_scaler").compute_dtype == "float32"
    import csv

    rows = list(csv.DictReader(open(tmp_path / "training_log.csv")))
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-4) and lrs[2] == pytest.approx(1e-3)


def test_split_file_and_val_fraction(tmp_path):
    from atomsets_tf.data.splits import make_splits
    from atomsets_tf.errors import DataFormatError

    table = learnable_table(40)
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps({"train": table.ids[:30], "test": table.ids[30:]}))
    train, val, test = make_splits(table, split_file=spec, val_fraction=0.2)
    assert len(train) == 24 and len(val) == 6 and sorted(test.tolist()) == list(range(30, 40))
    spec.write_text(json.dumps({"train": table.ids[:20], "val": table.ids[20:25], "test": ["nope"]}))
    with pytest.raises(DataFormatError, match="not in the data"):
        make_splits(table, split_file=spec)
    train, val, test = make_splits(table, val_fraction=0.2)
    assert (len(train), len(val), len(test)) == (24, 8, 8)
