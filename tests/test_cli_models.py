"""CLI contracts with pretrained models: predict, tap, models, inspect, structural fit."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from atomsets_tf.cli import main
from tests._tables import write_matbench_json

PRESET = "megnet-mp-2019.4.1-formation_energy"


@pytest.fixture(scope="module")
def golden(shared):
    stem = shared / "golden" / "megnet" / "mp-2019.4.1_formation_energy__A_jdft2d_first40"
    meta = json.loads(stem.parent.joinpath(stem.name + ".json").read_text())
    npz = np.load(stem.parent / (stem.name + ".npz"))
    return meta, npz


@pytest.fixture(scope="module")
def cif_folder(shared, tmp_path_factory):
    from atomsets_tf.data.io import load

    table = load("matbench_jdft2d").subset(range(6))
    folder = tmp_path_factory.mktemp("cifs")
    for i, s in zip(table.ids, table.inputs):
        s.to(filename=str(folder / f"{i}.json"), fmt="json")  # not a structure suffix: must be ignored
        s.to(filename=str(folder / f"{i}.cif"))
    return folder, table


def test_predict_matches_the_original_megnet(tmp_path, shared, golden):
    meta, npz = golden
    out = tmp_path / "pred.csv"
    data = tmp_path / "first6.json"
    from atomsets_tf.data.io import load

    table = load("matbench_jdft2d").subset(range(6))
    write_matbench_json(table, data, "e")
    assert main(["predict", PRESET, str(data), "-o", str(out)]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["id", "input", "prediction"] and len(rows) == 7
    for (i, formula, p), structure in zip(rows[1:], table.inputs, strict=True):
        assert float(p) == pytest.approx(float(npz[f"{i}/prediction"][0]), abs=1e-5)
        assert formula == structure.composition.reduced_formula


def test_predict_on_a_cif_folder(tmp_path, cif_folder):
    folder, table = cif_folder
    out = tmp_path / "pred.csv"
    assert main(["predict", PRESET, str(folder), "-o", str(out)]) == 0
    rows = list(csv.reader(open(out)))
    assert sorted(r[0] for r in rows[1:]) == sorted(table.ids)


def test_tap_npz_layout(tmp_path, cif_folder, golden):
    folder, table = cif_folder
    _, npz = golden
    out = tmp_path / "taps.npz"
    assert main(["tap", PRESET, str(folder), "--layer", "V1", "--layer", "f", "-o", str(out)]) == 0
    d = np.load(out)
    ids = list(d["ids"])
    assert d["V1"].dtype == np.float32 and d["V1.offsets"].dtype == np.int64
    assert d["V1.offsets"].shape == (len(ids) + 1,) and d["f"].shape == (len(ids), 96)
    for k, i in enumerate(ids):
        rows = d["V1"][d["V1.offsets"][k] : d["V1.offsets"][k + 1]]
        # CIF round trips keep the site order; values agree with the original to CIF precision.
        np.testing.assert_allclose(rows, npz[f"{i}/meg_net_layer_1/0"], atol=2e-3)
        np.testing.assert_allclose(d["f"][k], npz[f"{i}/concatenate_1"][0], atol=2e-3)


def test_models_and_inspect(capsys, shared):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert PRESET in out and "local" in out
    assert main(["inspect", PRESET]) == 0
    out = capsys.readouterr().out
    assert "V1" in out and "v_r" in out and "u3" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["tap", PRESET, "DATA", "--layer", "V9", "-o", "OUT.npz"], "unknown tap 'V9'"),
        (["predict", "megnet-no-such-model", "DATA", "-o", "OUT.csv"], "unknown preset"),
        (["predict", "BROKEN.hdf5", "DATA", "-o", "OUT.csv"], "BROKEN.hdf5"),
        (["predict", PRESET, "matbench_steels", "-o", "OUT.csv"], "needs structures"),
    ],
)
def test_model_errors(tmp_path, capsys, cif_folder, args, message):
    folder, _ = cif_folder
    broken = tmp_path / "BROKEN.hdf5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    subst = {"DATA": str(folder), "OUT.npz": str(tmp_path / "o.npz"), "OUT.csv": str(tmp_path / "o.csv"),
             "BROKEN.hdf5": str(broken)}
    assert main([subst.get(a, a) for a in args]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and message in err[0]


def test_structural_fit_and_predict(tmp_path, shared):
    from atomsets_tf.data.io import load

    table = load("matbench_jdft2d").subset(range(60))
    data = tmp_path / "jdft2d_60.json"
    write_matbench_json(table, data, "exfoliation_en")
    out = tmp_path / "run"
    assert main(["fit", str(data), "--model", "atomsets-v1", "--epochs", "3", "--units", "8", "--quiet",
                 "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "atomsets-v1" and np.isfinite(metrics["test_mae"])
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out / "model.keras"), str(data), "-o", str(pred)]) == 0
    rows = list(csv.reader(open(pred)))
    assert len(rows) == 61


@pytest.fixture(scope="module")
def cgat_data(shared, tmp_path_factory):
    from atomsets_tf.data.io import load

    table = load("matbench_jdft2d").subset(range(4))
    path = tmp_path_factory.mktemp("cgat") / "jdft2d_4.json"
    write_matbench_json(table, path, "exfoliation_en")
    return path, table


def test_cgat_convert_predict_and_tap(tmp_path, shared, cgat_data):
    pytest.importorskip("torch")
    data, table = cgat_data
    ckpt = shared / "golden" / "cgat" / "cgat_random_seed0.ckpt"
    golden = np.load(shared / "golden" / "cgat" / "cgat_small_io.npz")
    keras_file = tmp_path / "cgat.keras"
    assert main(["convert", str(ckpt), "-o", str(keras_file)]) == 0
    for model in (str(ckpt), str(keras_file)):
        out = tmp_path / "pred.csv"
        assert main(["predict", model, str(data), "-o", str(out)]) == 0
        rows = list(csv.reader(open(out)))
        assert rows[0] == ["id", "input", "prediction"]
        pred = np.array([float(r[2]) for r in rows[1:]])
        np.testing.assert_allclose(pred, golden["pred_denorm"].ravel()[:4], rtol=1e-4)
    taps = tmp_path / "taps.npz"
    assert main(["tap", str(keras_file), str(data), "--layer", "node_fea_1", "--layer", "cry_pool_out",
                 "-o", str(taps)]) == 0
    d = np.load(taps)
    assert d["node_fea_1.offsets"][-1] == sum(len(s) for s in table.inputs) == d["node_fea_1"].shape[0]
    assert d["cry_pool_out"].shape[0] == 4
