"""The model-family contract, proved by a fourth family defined in this file alone.

``SiteDeepSets`` is a Deep Sets model over the sites of a structure (each site its element's embedding, averaged,
then an MLP). Its family, registered here with no edit under ``atomsets_tf/``, goes through the public API and
command line: ``fit``, ``predict``, ``benchmark`` on one fold, ``prepare`` then ``fit`` on the prepared data,
``retrain --mode head``, an ensemble of 2, and a ``.keras`` round trip.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from _tables import write_matbench_json
from pymatgen.core import Lattice, Structure

from atomsets_tf.cli import main
from atomsets_tf.data.io import load
from atomsets_tf.data.pipeline import WeightedSets
from atomsets_tf.data.records import FieldSpec, RecordSchema
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.base import ModelFamily, Retrainable, require_structures
from atomsets_tf.models.loading import load_model, predict_table
from atomsets_tf.models.registry import ZooEntry, family_of, register_family, unregister_family
from atomsets_tf.workflows.fit import ModelConfig, TrainingConfig, fit
from atomsets_tf.workflows.prepare import prepare
from atomsets_tf.workflows.retrain import retrain

EPOCHS = TrainingConfig(epochs=4, patience=4, batch_size=8, learning_rate=3e-3)


@keras.saving.register_keras_serializable(package="contract_test")
class SiteDeepSets(keras.Model):
    """phi (an element embedding and a dense layer) on every site, their weighted mean, then rho and an output."""

    def __init__(self, units: int = 16, target_mean: float = 0.0, target_std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.target_mean, self.target_std = int(units), float(target_mean), float(target_std)
        self.embedding = keras.layers.Embedding(104, units, name="site_embedding")
        self.phi = keras.layers.Dense(units, activation="relu", name="phi")
        self.rho = keras.layers.Dense(units, activation="relu", name="rho")
        self.value = keras.layers.Dense(1, name="value")

    def call(self, inputs, training=None):
        weights = inputs["weights"][..., None]
        sites = self.phi(self.embedding(inputs["atoms"]))
        pooled = keras.ops.sum(sites * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1e-9)
        return self.value(self.rho(pooled)) * self.target_std + self.target_mean

    def get_config(self):
        return {**super().get_config(), "units": self.units, "target_mean": self.target_mean,
                "target_std": self.target_std}


class SiteRecords:
    """The prepared records of a structure: its sites' atomic numbers and equal weights (picklable)."""

    kind = "contract-sites"
    settings = {"version": 1}
    schema = RecordSchema(fields={"atoms": FieldSpec("int32", (), "atoms", "int32"),
                                  "weights": FieldSpec("float32", (), "atoms", "float32")},
                          masks={}, multiples={"atoms": 8}, size_group="atoms")

    def __call__(self, structure, entry_id: str) -> dict:
        atoms = np.array([site.specie.Z for site in structure], np.int32)
        return {"atoms": atoms, "weights": np.full(len(atoms), 1.0 / len(atoms), np.float32)}


def _sites(structures) -> WeightedSets:
    records = [SiteRecords()(s, "") for s in structures]
    return WeightedSets([r["atoms"] for r in records], [r["weights"] for r in records])


class SiteDeepSetsFamily(ModelFamily):
    name = "contract-deepsets"
    model_class = SiteDeepSets
    zoo = (ZooEntry("contract-deepsets", "contract-deepsets", "structure", fit=True),
           ZooEntry("contract-deepsets-head", "contract-deepsets", "structure", mode="head"))
    default_batch_size = 16

    def build(self, request, examples):
        targets = request.train_targets
        return SiteDeepSets(units=16, target_mean=float(np.mean(targets)), target_std=float(np.std(targets)) or 1.0,
                            name=request.name or "site_deep_sets")

    def examples_in_memory(self, source, table):
        require_structures(table, "a site Deep Sets model")
        return _sites(table.inputs)

    def record_builder(self, source):
        return SiteRecords()

    def examples_from_records(self, source, records):
        return WeightedSets([r["atoms"] for r in records], [r["weights"] for r in records])

    def transfer_copy(self, parent, task_type, train_targets, mode, with_log_std=False):
        config = {**parent.get_config(), "target_mean": float(np.mean(train_targets)),
                  "target_std": float(np.std(train_targets)) or 1.0}
        copy = SiteDeepSets.from_config(config)
        copy(_sites(parent_example()).padded([0]))  # built, so that the parent's weights can be set
        if mode != "scratch":
            copy.set_weights(parent.get_weights())
        return Retrainable(copy, [copy.rho, copy.value])


def parent_example() -> list:
    return [Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])]


@pytest.fixture(scope="module")
def deepsets():
    """The family, registered for this module's tests only."""
    fam = register_family(SiteDeepSetsFamily())
    yield fam
    unregister_family(fam.name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 CsCl-type binaries whose target grows with the mean atomic number, in matbench's layout."""
    rng = np.random.default_rng(0)
    elements = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Al", "Ga", "Cl", "Br", "I", "O", "S", "Se"]
    ids, structures, targets = [], [], []
    for k in range(48):
        a, b = rng.choice(elements, 2, replace=False)
        s = Structure(Lattice.cubic(float(rng.uniform(3.2, 4.4))), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        ids.append(f"x-{k}")
        structures.append(s)
        targets.append(float(np.mean([site.specie.Z for site in s]) / 10.0))
    from atomsets_tf.data.io import Table  # noqa: PLC0415  (only to write the fixture's file)

    path = tmp_path_factory.mktemp("contract") / "sites.json"
    return write_matbench_json(Table(ids, structures, np.array(targets), kind="structure"), path)


def _cli(capsys, *args) -> str:
    """Run the command line in this process (where the family is registered); its stdout."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_fit_predict_and_keras_round_trip_through_the_api(deepsets, data, tmp_path):
    result = fit(data, model="contract-deepsets", training=EPOCHS, out_dir=tmp_path / "run", progress=False)
    assert family_of(result.model) is deepsets
    assert np.isfinite(result.metrics["test_mae"])
    loaded = load_model(tmp_path / "run" / "model.keras")  # recognised by the registered name in its config
    assert isinstance(loaded, SiteDeepSets) and family_of(loaded) is deepsets
    table = load(data)
    np.testing.assert_allclose(predict_table(loaded, table), predict_table(result.model, table), rtol=1e-6)
    position = {entry_id: k for k, entry_id in enumerate(table.ids)}
    test = table.subset(np.array([position[i] for i in result.test_ids]))
    np.testing.assert_allclose(predict_table(loaded, test), result.test_predictions, rtol=1e-5, atol=1e-6)


def test_fit_predict_benchmark_on_the_command_line(deepsets, data, tmp_path, capsys):
    assert "contract-deepsets" in _cli(capsys, "fit", "--help")
    _cli(capsys, "fit", data, "--model", "contract-deepsets", "--epochs", 3, "--batch-size", 8, "-o", tmp_path / "fit",
         "--quiet")
    _cli(capsys, "predict", tmp_path / "fit" / "model.keras", data, "-o", tmp_path / "p.csv", "--quiet")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("id,") and len(lines) == 49
    _cli(capsys, "benchmark", data, "--model", "contract-deepsets", "--protocol", "paper", "--folds", "0", "--epochs", 3,
         "-o", tmp_path / "bench", "--quiet")
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert "contract-deepsets" in json.dumps(summary)


def test_prepare_then_fit_on_the_prepared_data(deepsets, data, tmp_path, capsys):
    manifest = prepare(data, "contract-deepsets", tmp_path / "prepared", progress=False)
    assert manifest["kind"] == "contract-sites"
    in_memory = fit(data, model="contract-deepsets", training=EPOCHS, progress=False)
    prepared = fit(tmp_path / "prepared", model="contract-deepsets", training=EPOCHS, progress=False)
    # The same entries, the same split and seed: the same model, whether the sites come from records or not.
    np.testing.assert_allclose(prepared.test_predictions, in_memory.test_predictions, rtol=1e-5, atol=1e-6)
    _cli(capsys, "prepare", data, "--for", "contract-deepsets", "-o", tmp_path / "cli-prepared", "--quiet")
    _cli(capsys, "fit", tmp_path / "cli-prepared", "--model", "contract-deepsets", "--epochs", 2, "-o", tmp_path / "f",
         "--quiet")


def test_retrain_head_keeps_the_backbone(deepsets, data, tmp_path, capsys):
    parent = fit(data, model="contract-deepsets", training=EPOCHS, progress=False).model
    result = retrain(parent, data, mode="head", training=EPOCHS, out_dir=tmp_path / "head", progress=False)
    child = load_model(tmp_path / "head" / "model.keras")
    for name in ("site_embedding", "phi"):  # the backbone: bit for bit the parent's
        for mine, theirs in zip(child.get_layer(name).get_weights(), parent.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert any(not np.array_equal(a, b) for a, b in zip(child.get_layer("rho").get_weights(),
                                                          parent.get_layer("rho").get_weights()))
    assert result.metrics["mode"] == "head"
    parent.save(tmp_path / "parent.keras")
    _cli(capsys, "retrain", tmp_path / "parent.keras", data, "--mode", "head", "--epochs", 2, "-o", tmp_path / "cli-head",
         "--quiet")


def test_an_ensemble_of_two(deepsets, data, tmp_path):
    result = fit(data, model="contract-deepsets", training=EPOCHS, model_config=ModelConfig(ensemble=2),
                 out_dir=tmp_path / "ens", progress=False)
    assert result.test_std is not None and np.all(result.test_std >= 0)
    loaded = load_model(tmp_path / "ens" / "model.keras")
    assert family_of(loaded).name == "ensemble" and len(loaded.members) == 2
    assert all(family_of(m) is deepsets for m in loaded.members)
    np.testing.assert_allclose(predict_table(loaded, load(data)), predict_table(result.model, load(data)), rtol=1e-6)


def test_a_second_family_of_the_same_name_is_refused(deepsets):
    class Other(SiteDeepSetsFamily):
        pass

    with pytest.raises(AtomSetsError, match="registered already"):
        register_family(Other())
