"""Retraining a CGAT parent on a 0/1 target (metallicity): a fresh sigmoid output trained with binary cross-entropy."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.models.cgat.data import collate, structures_to_graphs
from atomsets_tf.models.cgat.elements import ElementEmbedding
from atomsets_tf.models.cgat.model import CGAT
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.retrain import retrain

MODES = ("scratch", "head", "full")
DATA = ("data", "structures", "mp_is_metal_100.json")


def padded_batch(model: CGAT, structures) -> dict:
    return collate(structures_to_graphs(structures, model.element_embedding(), model.radius, model.neighbor_number))


@pytest.fixture(scope="module")
def metals(shared):
    from atomsets_tf.data.io import load

    return load(shared.joinpath(*DATA))


@pytest.fixture(scope="module")
def parent_file(tmp_path_factory, metals):
    """A tiny regression CGAT (random weights, seed other than the runs'), saved as ``.keras``."""
    symbols = sorted({el.symbol for s in metals.inputs for el in s.composition.elements})
    embedding = ElementEmbedding(symbols, np.random.default_rng(5).normal(size=(len(symbols), 16)).astype(np.float32),
                                 name="test")
    keras.utils.set_random_seed(7)
    model = CGAT(orig_elem_fea_len=16, elem_fea_len=8, n_graph=1, nbr_embedding_size=8, neighbor_number=8,
                 msg_heads=1, n_graph_roost=1, out_hidden=(8,), elements=symbols, radius=6.0)
    model.set_element_embedding(embedding)
    path = tmp_path_factory.mktemp("cgat_parent") / "parent.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def children(tmp_path_factory, metals, parent_file):
    """mode -> (retrain's result, its output folder); two epochs each."""
    runs = {}
    for mode in MODES:
        folder = tmp_path_factory.mktemp(f"cgat_{mode}")
        result = retrain(parent_file, metals, mode, training=TrainingConfig(epochs=2, patience=2, batch_size=32),
                         out_dir=folder, progress=False)
        runs[mode] = result, folder
    return runs


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_probabilities_and_a_roc_auc(children, mode):
    result, folder = children[mode]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["task_type"] == "classification" and metrics["mode"] == mode and metrics["model"] == "cgat"
    assert 0.0 <= metrics["test_roc_auc"] <= 1.0 and 0.0 <= metrics["val_roc_auc"] <= 1.0
    assert "test_mae" not in metrics
    p = result.test_predictions
    assert len(p) == metrics["n_test"] and ((p >= 0) & (p <= 1)).all()


def test_the_child_outputs_a_sigmoid_trained_with_binary_cross_entropy(children, metals):
    from atomsets_tf.models.loading import load_model

    result, folder = children["full"]
    assert result.model.loss == "binary_crossentropy"
    child = load_model(folder / "model.keras")  # safe mode
    assert isinstance(child, CGAT) and child.is_classifier and child.head.output_dim == 1
    batch = padded_batch(child, metals.inputs[:8])
    taps = child.compute_taps(batch, ["out_logit", "out"])
    logit = np.asarray(taps["out_logit"], np.float64)
    np.testing.assert_allclose(np.asarray(taps["out"]), 1 / (1 + np.exp(-logit)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(child.predict_structures(metals.inputs[:8]), np.asarray(taps["out"])[:, 0], rtol=1e-6)


def test_head_mode_keeps_the_graph_embedding_and_replaces_the_output(children, metals, parent_file):
    from atomsets_tf.models.loading import load_model

    parent = load_model(parent_file)
    head_child = load_model(children["head"][1] / "model.keras")
    full_child = load_model(children["full"][1] / "model.keras")
    batch = padded_batch(parent, metals.inputs[:8])

    def embedding(model):
        return np.asarray(model.compute_taps(batch, ["graph_embedding"])["graph_embedding"])

    np.testing.assert_array_equal(embedding(head_child), embedding(parent))
    assert not np.array_equal(embedding(full_child), embedding(parent))
    assert tuple(parent.head.kernel_out.shape) == (8, 2) and tuple(head_child.head.kernel_out.shape) == (8, 1)


def test_predict_cli_on_the_classified_child_gives_probabilities(children, shared, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(children["head"][1] / "model.keras"), str(shared.joinpath(*DATA)), "-o", str(out)]) == 0
    with out.open() as f:
        rows = list(csv.reader(f))
    values = np.array([float(r[3]) for r in rows[1:]])
    assert rows[0] == ["id", "input", "prediction", "probability"] and len(values) == 100
    assert ((values >= 0) & (values <= 1)).all() and np.ptp(values) > 0
    assert all(r[2] == str(int(float(r[3]) >= 0.5)) for r in rows[1:])


def test_copy_weights_below_output_both_ways():
    symbols = ["Na", "Cl"]
    batch = {"atom_z": np.array([[11, 17]], "int32"), "atom_mask": np.ones((1, 2), "float32"),
             "nbr_idx": np.array([[[1, 1], [0, 0]]], "int32"), "nbr_rank": np.array([[[1, 2], [1, 2]]], "int32"),
             "elem_z": np.array([[11, 17]], "int32"), "elem_weights": np.full((1, 2), 0.5, "float32")}
    keras.utils.set_random_seed(3)
    regression = CGAT(orig_elem_fea_len=4, elem_fea_len=4, n_graph=1, nbr_embedding_size=3, neighbor_number=2,
                      msg_heads=1, n_graph_roost=1, out_hidden=[4], elements=symbols, target_mean=2.0, target_std=3.0)
    regression.set_element_embedding(ElementEmbedding(symbols, np.arange(8.0).reshape(2, 4)))
    classifier = CGAT.from_config({**regression.get_config(), "task_type": "classification", "target_mean": 0.0,
                                   "target_std": 1.0})
    classifier.copy_weights_below_output(regression)
    back = CGAT.from_config({**classifier.get_config(), "task_type": "regression"})
    back.copy_weights_below_output(classifier)
    for model in (classifier, back):
        np.testing.assert_array_equal(np.asarray(model.compute_taps(batch, ["head_block_1"])["head_block_1"]),
                                      np.asarray(regression.compute_taps(batch, ["head_block_1"])["head_block_1"]))
    assert tuple(classifier(batch).shape) == (1, 1) and 0 < float(classifier(batch)[0, 0]) < 1
    assert tuple(back(batch).shape) == (1, 2) and float(classifier.target_std) == 1.0  # not the parent's 3
    assert "out_log_std" not in classifier.tap_names() and "out_logit" in classifier.tap_names()
    with pytest.raises(ValueError, match="task_type"):
        CGAT(task_type="ranking")
