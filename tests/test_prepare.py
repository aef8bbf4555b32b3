"""`atomsets-tf prepare`: datasets prepared once for a model, read by every command that takes data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import ModelConfig, fit
from atomsets_tf.workflows.prepare import prepare
from atomsets_tf.workflows.retrain import retrain
from tests._tables import write_matbench_json
from tests.test_cli import error_lines

#: Its models and datasets grow a process by about 1.5 GB: they run in a process of their own.
pytestmark = pytest.mark.isolated

PRESET = "megnet-mp-2019.4.1-formation_energy"
OTHER_MEGNET = "megnet-mp-2019.4.1-efermi"
TRAINING = TrainingConfig(epochs=2, patience=2, batch_size=8, seed=1)
#: The same, streaming every prepared table whatever its size.
STREAMED = replace(TRAINING, stream_above=0)


@pytest.fixture(scope="module")
def perovskites(shared):
    from atomsets_tf.data.io import load

    return load(shared / "data" / "structures" / "matbench_perovskites_val_subset.json.gz").subset(range(48))


@pytest.fixture(scope="module")
def source_file(perovskites, tmp_path_factory):
    return write_matbench_json(perovskites, tmp_path_factory.mktemp("data") / "p.json", "e_form")


@pytest.fixture(scope="module")
def megnet_dataset(source_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "megnet"
    prepare(source_file, PRESET, out, shard_size=20, progress=False)
    return out


def test_manifest_describes_the_dataset(megnet_dataset, perovskites):
    manifest = json.loads((megnet_dataset / "manifest.json").read_text())
    assert manifest["kind"] == "megnet-graph" and manifest["settings"]["cutoff"] == 5.0
    assert manifest["ids"] == perovskites.ids and manifest["failures"] == []
    np.testing.assert_array_equal(manifest["targets"], perovskites.targets)
    assert len(manifest["shards"]) == 3 and all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert manifest["parent"]["family"] == "megnet" and len(manifest["parent"]["sha256"]) == 64


def weights(model) -> list[np.ndarray]:
    keras_model = getattr(model, "keras_model", model)
    return [np.asarray(w) for w in keras_model.get_weights()]


def test_retrain_on_a_prepared_dataset_equals_retrain_on_its_source(megnet_dataset, source_file):
    from_file = retrain(PRESET, str(source_file), "head", training=TRAINING, progress=False)
    from_prepared = retrain(PRESET, str(megnet_dataset), "head", training=TRAINING, progress=False)
    assert from_prepared.test_ids == from_file.test_ids
    for a, b in zip(weights(from_prepared.model), weights(from_file.model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert from_prepared.metrics["test_mae"] == from_file.metrics["test_mae"]


def test_predict_and_tap_read_a_prepared_dataset(megnet_dataset, source_file, tmp_path):
    for data, name in ((source_file, "file"), (megnet_dataset, "prepared")):
        assert main(["predict", PRESET, str(data), "-o", str(tmp_path / f"{name}.csv")]) == 0
        assert main(["tap", PRESET, str(data), "--layer", "f", "-o", str(tmp_path / f"{name}.npz")]) == 0
    assert (tmp_path / "file.csv").read_text() == (tmp_path / "prepared.csv").read_text()
    rows = (tmp_path / "prepared.csv").read_text().splitlines()
    assert rows[0].startswith("id,input,") and all(row.split(",")[1] for row in rows[1:])  # the manifest's formulas
    with np.load(tmp_path / "file.npz") as a, np.load(tmp_path / "prepared.npz") as b:
        np.testing.assert_array_equal(a["ids"], b["ids"])
        np.testing.assert_array_equal(a["f"], b["f"])


def test_a_megnet_dataset_is_refused_by_a_structural_atomsets_model(megnet_dataset):
    from atomsets_tf.errors import PreparedDatasetError

    with pytest.raises(PreparedDatasetError, match="megnet-graph"):
        fit(str(megnet_dataset), "atomsets-v1", training=TRAINING, progress=False)


def test_taps_prepared_from_another_parent_are_refused(source_file, tmp_path):
    from atomsets_tf.errors import PreparedDatasetError

    out = tmp_path / "v1"
    prepare(source_file, "mlp-f", out, progress=False)
    with pytest.raises(PreparedDatasetError, match="manifest"):
        fit(str(out), "mlp-f", features_from=OTHER_MEGNET, training=TRAINING, progress=False)


def test_fit_on_prepared_taps_matches_fit_on_the_file(source_file, tmp_path):
    out = tmp_path / "f"
    prepare(source_file, "mlp-f", out, shard_size=16, progress=False)
    config = ModelConfig(units=8)
    a = fit(str(source_file), "mlp-f", training=TRAINING, model_config=config, progress=False)
    b = fit(str(out), "mlp-f", training=TRAINING, model_config=config, progress=False)
    for x, y in zip(weights(a.model), weights(b.model), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def isolated_atoms():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_a_structure_that_fails_is_listed_and_strict_stops(perovskites, tmp_path, capsys):
    table = perovskites.subset(range(6))
    table.inputs[2] = isolated_atoms()
    data = write_matbench_json(table, tmp_path / "bad.json", "e_form")
    out = tmp_path / "prepared"
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["id"] for f in manifest["failures"]] == [table.ids[2]]
    assert "bond" in manifest["failures"][0]["reason"]
    assert table.ids[2] not in manifest["ids"] and len(manifest["ids"]) == 5
    capsys.readouterr()
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(tmp_path / "strict"), "--strict"]) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1


def test_retrain_streams_a_large_prepared_dataset(megnet_dataset, monkeypatch):
    from atomsets_tf.data import streaming

    streamed = []
    stream = streaming.StreamingSets.stream
    monkeypatch.setattr(streaming.StreamingSets, "stream", lambda self, *a, **k: streamed.append(1) or stream(
        self, *a, **k))
    result = retrain(PRESET, str(megnet_dataset), "head", training=STREAMED, progress=False)  # stream_above=0
    assert result.metrics["epochs_run"] == 2 and np.isfinite(result.metrics["test_mae"])
    assert streamed  # the training set streamed from the shards
    assert result.metrics["fingerprint"]["settings"]["training"]["stream_above"] == 0


def test_benchmark_and_learning_curve_read_a_prepared_dataset(megnet_dataset, tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", str(megnet_dataset), "--model", "megnet-head", "--protocol", "paper", "--folds", "0",
                 "--epochs", "1", "--batch-size", "16", "--quiet", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_folds"] == 1 and np.isfinite(summary["mean"])
    curve = tmp_path / "curve"
    assert main(["learning-curve", str(megnet_dataset), "--model", "megnet-head", "--sizes", "16,32",
                 "--protocol", "paper", "--epochs", "1", "--batch-size", "16", "--quiet",
                 "-o", str(curve)]) == 0
    assert (curve / "learning_curve.json").is_file()


CGAT = "cgat-perovskites"


@pytest.fixture(scope="module")
def cgat_dataset(source_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "cgat"
    prepare(source_file, CGAT, out, shard_size=16, workers=2, progress=False)
    return out


def test_cgat_graphs_store_atomic_numbers_and_retrain_as_from_the_file(cgat_dataset, source_file, monkeypatch):
    manifest = json.loads((cgat_dataset / "manifest.json").read_text())
    assert manifest["kind"] == "cgat-graph" and manifest["settings"]["radius"] == 18.0
    assert manifest["schema"]["fields"]["atom_z"]["dtype"] == "uint8"
    assert "atom_fea" not in manifest["schema"]["fields"]
    from_file = retrain(CGAT, str(source_file), "head", training=TRAINING, progress=False)
    from_prepared = retrain(CGAT, str(cgat_dataset), "head", training=TRAINING, progress=False)
    for a, b in zip(weights(from_prepared.model), weights(from_file.model), strict=True):
        np.testing.assert_array_equal(a, b)
    streamed = retrain(CGAT, str(cgat_dataset), "head", training=STREAMED, progress=False)  # tf.data feeds it too
    assert np.isfinite(streamed.metrics["test_mae"])


def test_a_megnet_dataset_is_refused_by_a_cgat(megnet_dataset, tmp_path, capsys):
    assert main(["predict", CGAT, str(megnet_dataset), "-o", str(tmp_path / "p.csv")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "megnet-graph" in line and "manifest.json" in line


def test_official_folds_select_by_id_from_the_manifest(tmp_path):
    from atomsets_tf.data.io import load
    from atomsets_tf.data.splits import make_splits

    source = load("matbench_jdft2d")
    prepare("matbench_jdft2d", PRESET, tmp_path / "jdft2d", progress=False)
    prepared = load(str(tmp_path / "jdft2d"))
    assert prepared.meta["task"] == "matbench_jdft2d" and prepared.kind == "prepared"
    for a, b in zip(make_splits(source, "matbench", 2), make_splits(prepared, "matbench", 2), strict=True):
        assert [source.ids[i] for i in a] == [prepared.ids[i] for i in b]


def test_a_corrupt_record_met_while_streaming_names_its_shard(megnet_dataset, tmp_path, monkeypatch):
    import shutil

    from atomsets_tf.errors import CorruptShardError

    broken = tmp_path / "broken"
    shutil.copytree(megnet_dataset, broken)
    shard = sorted(broken.glob("shard-*.tfrecord"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size (the cheap check passes): only the records' CRCs see it
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=shard.name):
        retrain(PRESET, str(broken), "head", training=STREAMED, progress=False)


def test_structures_of_a_file_are_parsed_and_checked_in_the_workers(perovskites, tmp_path, capsys):
    table = perovskites.subset(range(6))
    data = write_matbench_json(table, tmp_path / "p.json", "e_form")
    raw = json.loads(data.read_text())
    crowded = table.inputs[1].copy()
    crowded.append("O", crowded[0].frac_coords + 0.01)  # an atom written twice: refused at load time
    raw["data"][1][0] = crowded.as_dict()
    raw["data"][4][0] = {"lattice": "not a structure"}
    data.write_text(json.dumps(raw))
    out = tmp_path / "prepared"
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(out), "--workers", "2", "--quiet"]) == 0
    failures = {f["id"]: f["reason"] for f in json.loads((out / "manifest.json").read_text())["failures"]}
    assert sorted(failures) == [table.ids[1], table.ids[4]]
    assert "closer than the minimum" in failures[table.ids[1]] and "not a pymatgen structure" in failures[table.ids[4]]
    capsys.readouterr()
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(tmp_path / "strict"), "--strict"]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert table.ids[1] in line and str(data) in line



def test_predict_refuses_a_manifest_naming_a_shard_outside_its_folder(megnet_dataset, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(megnet_dataset, tampered)
    shutil.copy(tampered / "shard-00000.tfrecord", tmp_path / "x.tfrecord")  # its sha256 and size match
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["shards"][0]["file"] = "../x.tfrecord"
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["predict", PRESET, str(tampered), "-o", str(tmp_path / "p.csv")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "'../x.tfrecord'" in line and str(tampered) in line
    assert not (tmp_path / "p.csv").exists()


def test_a_file_in_which_every_entry_fails_is_an_error(perovskites, tmp_path, capsys):
    table = perovskites.subset(range(4))
    data = write_matbench_json(table, tmp_path / "entries.json", "e_form")
    raw = json.loads(data.read_text())
    for row in raw["data"]:  # ComputedStructureEntry dicts: not structures (yet)
        row[0] = {"@module": "pymatgen.entries.computed_entries", "@class": "ComputedStructureEntry",
                  "structure": row[0], "energy": -1.0, "data": {}}
    data.write_text(json.dumps(raw))
    capsys.readouterr()
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(tmp_path / "cli"), "--quiet"]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "none of the 4 entries" in line and str(data) in line and table.ids[0] in line
    with pytest.raises(AtomSetsError, match=f"none of the 4 entries.*{table.ids[0]}"):
        prepare(data, PRESET, tmp_path / "api", progress=False)
    one_good = json.loads(data.read_text())
    one_good["data"][2][0] = one_good["data"][2][0]["structure"]
    data.write_text(json.dumps(one_good))
    assert main(["prepare", str(data), "--for", PRESET, "-o", str(tmp_path / "partial"), "--quiet"]) == 0
    assert "1 entries in 1 shards" in capsys.readouterr().out
