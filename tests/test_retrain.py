"""Retraining pretrained models in the three transfer modes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.retrain import retrain
from tests._tables import write_matbench_json

#: Its MEGNet and CGAT retrains grow a process by about 1.8 GB: they run in a process of their own.
pytestmark = pytest.mark.isolated

PRESET = "megnet-mp-2019.4.1-formation_energy"


@pytest.fixture(scope="module")
def perovskites(shared):
    from atomsets_tf.data.io import load

    return load(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz").subset(range(40))


@pytest.fixture(scope="module")
def parent(shared):
    from atomsets_tf.models.loading import load_model

    return load_model(PRESET)


def weights_by_layer(keras_model):
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in keras_model.layers}


def test_head_mode_changes_only_the_head(tmp_path, perovskites, parent):
    from atomsets_tf.models.loading import load_model

    # An already-loaded parent is accepted, and is left as it was.
    result = retrain(parent, perovskites, "head", training=TrainingConfig(epochs=2, patience=2, batch_size=8),
                     out_dir=tmp_path, progress=False)
    assert result.metrics["mode"] == "head" and np.isfinite(result.metrics["test_mae"])
    assert PRESET in result.metrics["parent"]
    child = load_model(tmp_path / "model.keras")
    before, after = weights_by_layer(parent.keras_model), weights_by_layer(child.keras_model)
    changed = {n for n in before if any(not np.array_equal(a, b) for a, b in zip(before[n], after[n]))}
    assert changed and all(n.startswith("readout_") for n in changed)
    # The retrained MEGNet predicts in the new target's units, and still taps like its parent below the head.
    taps = child.tap(perovskites.inputs[:2], ["V1", "f"])
    ref = parent.tap(perovskites.inputs[:2], ["V1", "f"])
    np.testing.assert_array_equal(taps["f"], ref["f"])
    # A saved MEGNet keeps its metadata: the parent's, and how it was retrained.
    assert child.metadata["retrained_mode"] == "head" and child.metadata["task_type"] == "regression"
    assert all(child.metadata[k] == v for k, v in parent.metadata.items() if k not in ("task_type",))


def test_a_megnet_parent_retrains_as_an_ensemble(tmp_path, perovskites, parent):
    from atomsets_tf.models.ensemble import Ensemble
    from atomsets_tf.models.loading import load_model, predict_with_std

    result = retrain(parent, perovskites.subset(range(24)), "head", ensemble=2, bootstrap=True,
                     training=TrainingConfig(epochs=1, patience=1, batch_size=8), out_dir=tmp_path, progress=False)
    assert isinstance(result.model, Ensemble) and len(result.model.members) == 2
    assert result.metrics["ensemble"] == 2 and (result.test_std > 0).any()
    saved = load_model(tmp_path / "model.keras")
    mean, std = predict_with_std(saved, perovskites.subset(range(4)))
    members = np.stack([m.predict(perovskites.inputs[:4]) for m in saved.members])
    np.testing.assert_allclose(mean, members.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, members.std(0) * saved.std_scale, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "scratch"])
def test_full_and_scratch_modes_cli(tmp_path, perovskites, mode):
    data = tmp_path / "p.json"
    write_matbench_json(perovskites, data, "e_form")
    out = tmp_path / "run"
    args = ["retrain", PRESET, str(data), "--mode", mode, "--epochs", "2", "--batch-size", "8", "--quiet",
            "-o", str(out)]
    if mode == "full":
        args += ["--backbone-lr-factor", "0.1"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == mode and metrics["replicas"] == 1 and metrics["resumed_from_epoch"] == 0
    assert metrics["epochs_run"] == 2 and (out / "model.keras").is_file()


def test_atomsets_parent_to_classification(tmp_path, shared):
    from atomsets_tf.data.io import load
    from atomsets_tf.workflows.fit import ModelConfig, fit

    parent_dir = tmp_path / "parent"
    fit(load("matbench_expt_gap").subset(range(200)), "atomsets", training=TrainingConfig(epochs=2, patience=2),
        model_config=ModelConfig(units=8), out_dir=parent_dir, progress=False)
    child = retrain(parent_dir / "model.keras", load("matbench_expt_is_metal").subset(range(200)), "head",
                    training=TrainingConfig(epochs=2, patience=2), progress=False)
    assert child.metrics["task_type"] == "classification"
    assert child.model.get_layer("output").activation.__name__ == "sigmoid"
    assert 0.0 <= child.metrics["test_roc_auc"] <= 1.0


def test_bad_mode_and_factor(capsys, perovskites):
    assert main(["retrain", PRESET, "x.json", "--mode", "partial", "-o", "o"]) == 2
    with pytest.raises(Exception, match="backbone_lr_factor"):
        retrain(PRESET, perovskites, "full", backbone_lr_factor=2.0)


@pytest.mark.parametrize("mode", ["head", "full", "scratch"])
def test_cgat_retrain(tmp_path, shared, mode):
    pytest.importorskip("torch")
    from atomsets_tf.data.io import load
    from atomsets_tf.models.loading import load_model

    ckpt = shared / "golden" / "cgat" / "cgat_random_seed0.ckpt"
    parent = load_model(ckpt)
    table = load("matbench_jdft2d").subset(range(24))
    result = retrain(ckpt, table, mode, training=TrainingConfig(epochs=2, patience=2, batch_size=8),
                     out_dir=tmp_path, progress=False, backbone_lr_factor=0.5 if mode == "full" else 1.0)
    assert result.metrics["model"] == "cgat" and np.isfinite(result.metrics["test_mae"])
    child = load_model(tmp_path / "model.keras")
    # the element vectors it looks up are the parent's, also when trained from scratch
    np.testing.assert_array_equal(np.asarray(child.element_z_table()), np.asarray(parent.element_z_table()))
    def rel(v):  # the path inside the model (the model's own name may differ)
        return v.path.split("/", 1)[1]

    before = {rel(v): np.asarray(v) for v in parent.weights}
    changed = {rel(v) for v in child.weights if not np.array_equal(np.asarray(v), before[rel(v)])}
    head = {rel(v) for v in child.head.weights}
    assert changed - {"target_mean", "target_std"}
    if mode == "head":
        # Only the residual output network (and the new normalisation) changed: the graph embedding is bit-identical.
        assert all(p in head or p.endswith(("target_mean", "target_std")) for p in changed)
    else:
        assert any(p not in head and not p.endswith(("target_mean", "target_std")) for p in changed)


def test_cgat_robust_l1_and_refusal_elsewhere(tmp_path, shared):
    pytest.importorskip("torch")
    from atomsets_tf.data.io import load
    from atomsets_tf.errors import AtomSetsError
    from atomsets_tf.training.losses import robust_l1

    y = np.array([[1.0], [2.0]], np.float32)
    pred = np.array([[1.5, 0.0], [2.0, np.log(2.0)]], np.float32)
    expected = np.mean([np.sqrt(2) * 0.5 + 0.0, 0.0 + np.log(2.0)])
    assert float(robust_l1(y, pred)) == pytest.approx(expected, rel=1e-6)
    ckpt = shared / "golden" / "cgat" / "cgat_random_seed0.ckpt"
    table = load("matbench_jdft2d").subset(range(24))
    result = retrain(ckpt, table, "head", training=TrainingConfig(epochs=2, patience=2, batch_size=8, loss="robust_l1"),
                     progress=False)
    assert np.isfinite(result.metrics["test_mae"]) and result.metrics["training"]["loss"] == "robust_l1"
    with pytest.raises(AtomSetsError, match="robust_l1"):
        retrain(PRESET, table, "head", training=TrainingConfig(epochs=1, loss="robust_l1"), progress=False)


def test_megnet_parent_to_classification(tmp_path, shared, parent):
    from atomsets_tf.data.io import read_table
    from atomsets_tf.models.loading import load_model

    table = read_table(shared / "data" / "structures" / "mp_is_metal_100.json").subset(range(40))
    result = retrain(PRESET, table, "head", task_type="classification",
                     training=TrainingConfig(epochs=2, patience=2, batch_size=8), out_dir=tmp_path, progress=False)
    assert result.metrics["task_type"] == "classification" and 0.0 <= result.metrics["test_roc_auc"] <= 1.0
    child = load_model(tmp_path / "model.keras")
    p = child.predict(table.inputs[:4])
    assert ((p >= 0) & (p <= 1)).all()
    # Below the head, the features are the parent's, bit for bit.
    np.testing.assert_array_equal(child.tap(table.inputs[:2], ["f"])["f"], parent.tap(table.inputs[:2], ["f"])["f"])


def test_cgat_under_mixed_precision_is_refused_with_one_error_line(perovskites, tmp_path, capsys):
    from tests.test_cli import error_lines

    data = write_matbench_json(perovskites, tmp_path / "p.json", "e_form")
    args = ["retrain", "cgat-perovskites", str(data), "--mode", "full", "--epochs", "1", "--mixed-precision",
            "mixed_bfloat16", "--quiet", "-o", str(tmp_path / "run")]
    assert main(args) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "mixed precision" in line
