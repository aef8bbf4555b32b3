"""MEGNet Python API: taps, batching and padding invariance, saving, bad inputs, activations, presets."""

from __future__ import annotations

import json
import shutil
import warnings

import keras
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from atomsets_tf import presets
from atomsets_tf.errors import (
    DataFormatError,
    EmptyStructureError,
    IsolatedAtomError,
    PresetNotAvailableError,
    UnknownElementError,
    UnknownPresetError,
    UnknownTapError,
)
from atomsets_tf.models.megnet.activations import hard_sigmoid_keras2, keras2_activation, softplus2
from atomsets_tf.models.megnet.graph import IsolatedAtomWarning, batch_graphs, structure_to_graph
from atomsets_tf.models.megnet.layers import MEGNetBlock, MEGNetSet2Set
from atomsets_tf.utils.io import shared_dir
from tests._tables import toy_crystals

SHARED = shared_dir()
PRETRAINED = None if SHARED is None else SHARED / "pretrained" / "megnet"
needs_pretrained = pytest.mark.skipif(
    PRETRAINED is None or not PRETRAINED.is_dir(), reason="shared/pretrained/megnet not found"
)
PARENT = "megnet-mp-2019.4.1-formation_energy"


def _structures():
    return toy_crystals(srtio3_a=3.9, with_nacl=True)


@pytest.fixture(scope="module")
def model():
    if PRETRAINED is None or not PRETRAINED.is_dir():
        pytest.skip("shared/pretrained/megnet not found")
    from atomsets_tf.models.megnet.model import MEGNet

    return MEGNet.from_preset(PARENT, download=False)


# ----------------------------------------------------------------------------- activations


def test_keras2_hard_sigmoid_and_softplus2_definitions():
    x = np.array([-4.0, -2.5, -1.0, 0.0, 0.3, 1.0, 2.5, 4.0], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)
    # Keras 3's hard_sigmoid is a different function (relu6(x + 3) / 6)
    k3 = np.asarray(keras.activations.hard_sigmoid(x))
    assert np.abs(k3 - np.clip(0.2 * x + 0.5, 0, 1)).max() > 0.05
    assert keras2_activation("hard_sigmoid") is hard_sigmoid_keras2
    np.testing.assert_allclose(np.asarray(softplus2(x)), np.log1p(np.exp(x)) - np.log(2.0), atol=1e-6)
    assert float(softplus2(np.float32(0.0))) == 0.0
    with pytest.raises(KeyError):
        keras2_activation("some_custom_thing")


def test_set2set_resets_cell_state_and_sums_projected_memories():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 4)).astype(np.float32)
    mask = np.ones((1, 5), np.float32)
    layer = MEGNetSet2Set(n_hidden=3, steps=2)
    layer([x, mask])
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    wm, bm, k, bk = (w.numpy().astype(np.float64) for w in layer.weights)
    # NumPy reference of megnet's Set2Set
    m = x[0].astype(np.float64) @ wm + bm
    q = np.zeros(6)
    hs = lambda v: np.clip(0.2 * v + 0.5, 0, 1)  # noqa: E731
    for _ in range(2):
        z = q @ k + bk
        i, f, g, o = z[:3], z[3:6], z[6:9], z[9:]
        c = f * 0.0 + hs(i) * np.tanh(g)
        h = hs(o) * np.tanh(c)
        e = m @ h
        a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        q = np.concatenate([h, a @ m])
    np.testing.assert_allclose(np.asarray(layer([x, mask]))[0], q, atol=1e-5)
    carried = MEGNetSet2Set(n_hidden=3, steps=2, carry_cell_state=True)
    carried([x, mask])
    carried.set_weights(layer.get_weights())
    assert np.abs(np.asarray(carried([x, mask])) - np.asarray(layer([x, mask]))).max() > 1e-6


def test_megnet_block_padding_and_isolated_atoms():
    rng = np.random.default_rng(1)
    block = MEGNetBlock([8, 8, 4], [8, 8, 4], [8, 8, 4])
    v = rng.normal(size=(1, 3, 5)).astype(np.float32)
    e = rng.normal(size=(1, 4, 6)).astype(np.float32)
    u = rng.normal(size=(1, 2)).astype(np.float32)
    i1 = np.array([[0, 0, 1, 1]], np.int32)  # atom 2 is isolated
    i2 = np.array([[1, 1, 0, 0]], np.int32)
    out = block([v, e, u, i1, i2, np.ones((1, 3), np.float32), np.ones((1, 4), np.float32)])
    # the same graph padded to 6 atoms / 9 bonds, batched with a random second graph
    vp = np.concatenate([np.pad(v, ((0, 0), (0, 3), (0, 0)), constant_values=7.0), rng.normal(size=(1, 6, 5))])
    ep = np.concatenate([np.pad(e, ((0, 0), (0, 5), (0, 0)), constant_values=-3.0), rng.normal(size=(1, 9, 6))])
    up = np.concatenate([u, rng.normal(size=(1, 2))])
    i1p = np.concatenate([np.pad(i1, ((0, 0), (0, 5))), rng.integers(0, 6, (1, 9))]).astype(np.int32)
    i2p = np.concatenate([np.pad(i2, ((0, 0), (0, 5))), rng.integers(0, 6, (1, 9))]).astype(np.int32)
    am = np.array([[1, 1, 1, 0, 0, 0], [1] * 6], np.float32)
    bm = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0], [1] * 9], np.float32)
    outp = block([vp.astype(np.float32), ep.astype(np.float32), up.astype(np.float32), i1p, i2p, am, bm])
    np.testing.assert_allclose(np.asarray(outp[0])[0, :3], np.asarray(out[0])[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(outp[1])[0, :4], np.asarray(out[1])[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(outp[2])[0], np.asarray(out[2])[0], atol=1e-6)


# ----------------------------------------------------------------------------- model API


def test_tap_api_shapes_and_levels(model):
    structures = _structures()
    out = model.tap(structures, ["V0", "V1", "V3_residual", "E2", "u1", "v_r", "f", "prediction"], batch_size=3)
    for name in ("V0", "V1", "V3_residual"):
        assert model.is_atom_level(name)
        assert len(out[name]) == len(structures)
        for s, arr in zip(structures, out[name], strict=True):
            assert arr.shape == (len(s), model.tap_dim(name)) and arr.dtype == np.float32
    assert model.tap_level("E2") == "bond" and not model.is_atom_level("E2")
    assert out["f"].shape == (len(structures), 96)
    assert out["u1"].shape == (len(structures), 32) and out["v_r"].shape == (len(structures), 32)
    np.testing.assert_array_equal(out["f"][:, :32], out["v_r"])
    pred = model.predict(structures, batch_size=2)
    assert pred.shape == (len(structures),) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, out["prediction"][:, 0], atol=2e-6)
    seen = []
    model.predict(structures, batch_size=3, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(structures), len(structures)) and len(seen) == 3
    sub = model.submodel("f")
    batch = batch_graphs(model.graphs(structures[:2]))
    np.testing.assert_allclose(np.asarray(sub(batch)), out["f"][:2], atol=1e-5)
    # V0 rows are the embedding table's rows for each Z, in site order
    table = model.embedding_table()
    assert table.shape == (95, 16)
    z = [site.specie.Z for site in structures[4]]
    np.testing.assert_array_equal(out["V0"][4], table[z])


def test_tap_names_describe_and_unknown_tap(model):
    names = model.tap_names
    for n in ("V0", "V1", "V2", "V3", "V1_residual", "u1", "u2", "u3", "v_r", "e_r", "f", "prediction"):
        assert n in names
    text = model.describe()
    assert "meg_net_layer_1/0" in text and "set2_set_1" in text and "T=2" in text and "cutoff 5" in text
    with pytest.raises(UnknownTapError, match="valid taps: V0, V1") as e:
        model.tap(_structures()[:1], ["V9"])
    assert "\n" not in str(e.value)


def test_results_do_not_depend_on_the_batch(model):
    structures = _structures()
    names = ["V1", "E3", "u3", "v_r", "f", "prediction"]
    alone = [model.tap([s], names) for s in structures]
    for bs in (2, 3, 7):
        together = model.tap(structures, names, batch_size=bs)
        for i in range(len(structures)):
            # the graph blocks to float32 rounding: a matmul over another row count may take another kernel
            # (seen on AMD EPYC: 4.5e-6, relative 1.8e-5; bit for bit on the Intel machines before)
            for n in ("V1", "E3", "u3"):
                np.testing.assert_allclose(together[n][i], alone[i][n][0], rtol=1e-4, atol=1e-5)
            # Set2Set: the float32 exp of the last few elements of a tensor may take a scalar
            # code path, so padding can move a readout by an ulp
            for n in ("v_r", "f"):
                np.testing.assert_allclose(together[n][i], alone[i][n][0], rtol=1e-5, atol=1e-5)
            # only the last Dense (16 -> 1) may round differently with the batch's row count
            np.testing.assert_allclose(together["prediction"][i], alone[i]["prediction"][0], rtol=1e-6, atol=2e-6)


def test_plan_batches_covers_everything_within_budget():
    from atomsets_tf.data.padding import padded_length
    from atomsets_tf.models.megnet.batches import plan_batches

    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 3000, size=500)
    for bs, budget in ((32, 16384), (128, 8192), (7, None)):
        batches = plan_batches(sizes, bs, budget)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(500))
        for b in batches:
            assert 1 <= len(b) <= bs
            if budget is not None and len(b) > 1:
                assert len(b) * padded_length(sizes[b].max()) <= budget


def test_batch_layout(model):
    graphs = model.graphs(_structures()[:3])
    b = batch_graphs(graphs)
    n, m = b["atoms"].shape[1], b["distance"].shape[1]
    assert n % 8 == 0 and m % 8 == 0
    for i, g in enumerate(graphs):
        assert b["atom_mask"][i].sum() == g.n_atoms and b["bond_mask"][i].sum() == g.n_bonds
        assert b["index1"][i].max() < n and b["index2"][i, : g.n_bonds].max() < g.n_atoms
    assert b["state"].shape == (3, 2)


def test_save_and_load_keras_safe_mode(model, tmp_path):
    from atomsets_tf.models.megnet.model import MEGNet

    path = tmp_path / "parent.keras"
    model.save(path)
    loaded = MEGNet.load(path)
    assert loaded.cutoff == model.cutoff and loaded.tap_names == model.tap_names
    structures = _structures()
    a = model.tap(structures, ["V2", "f", "prediction"])
    b = loaded.tap(structures, ["V2", "f", "prediction"])
    np.testing.assert_array_equal(a["prediction"], b["prediction"])
    np.testing.assert_array_equal(a["f"], b["f"])
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(reloaded, keras.Model)


def test_bad_structures(model):
    with pytest.raises(EmptyStructureError):
        model.predict([Structure(Lattice.cubic(4.0), [], [])])
    lonely = Structure(Lattice.cubic(12.0), ["Fe"], [[0, 0, 0]])
    with pytest.raises(IsolatedAtomError, match="no bonds") as e:
        model.predict([_structures()[0], lonely], ids=["ok", "lonely"])
    assert "'lonely'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UnknownElementError, match="atomic number 95"):
        model.predict([Structure(Lattice.cubic(3.0), ["Am"], [[0, 0, 0]])])
    disordered = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(DataFormatError, match="disordered"):
        model.predict([disordered])
    with pytest.raises(DataFormatError):
        model.predict(["not a structure"])


def test_partially_isolated_atoms_warn_and_get_zero_aggregate(model):
    # two Fe atoms 2.5 Å apart, a third one 6 Å away from both (cutoff 5 Å): isolated
    s = Structure(Lattice.cubic(20.0), ["Fe", "Fe", "Fe"], [[0, 0, 0], [0.125, 0, 0], [0.0625, 0.3, 0]])
    with pytest.warns(IsolatedAtomWarning, match="1 atom"):
        g = structure_to_graph(s, model.cutoff)
    assert g.n_isolated == 1 and 2 not in set(g.index1.tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.tap([s], ["V1", "prediction"])
    assert np.all(np.isfinite(out["V1"][0])) and np.isfinite(out["prediction"][0, 0])


# ----------------------------------------------------------------------------- presets


def test_presets_registry_and_unknown_name():
    names = presets.preset_names()
    megnet_models = [n for n in names if presets.get_preset(n).kind == "megnet"]
    assert PARENT in names and len(megnet_models) == 9
    with pytest.raises(UnknownPresetError, match="known presets"):
        presets.get_preset("megnet-nope")
    listed = {p["name"]: p for p in presets.list_presets()}
    assert set(listed) == set(names)
    if PRETRAINED is not None and PRETRAINED.is_dir():
        assert all(p["available"] for p in listed.values())


@needs_pretrained
def test_preset_resolution_order_env_and_download(tmp_path, monkeypatch):
    preset = presets.get_preset(PARENT)
    models = tmp_path / "models"
    for pf in preset.files.values():
        dest = models / pf.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRETRAINED / pf.relpath.removeprefix("megnet/"), dest)
    monkeypatch.setenv(presets.MODELS_ENV, str(models))
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path / "cache"))
    assert presets.resolve(PARENT)["hdf5"] == models / preset.files["hdf5"].relpath
    # a file with the wrong content is ignored (with a warning), the next folder is used
    (models / preset.files["json"].relpath).write_text("{}")
    with pytest.warns(UserWarning, match="sha256"):
        assert presets.resolve(PARENT)["json"].parent != models / "megnet" / "mp-2019.4.1"

    # download into the cache, verified by sha256 (a file:// source stands in for the network)
    src = tmp_path / "upstream"
    src.mkdir()
    shutil.copy(PRETRAINED / "mp-2018.6.1/log10G.hdf5", src / "log10G.hdf5")
    good = presets.PresetFile(
        "test/log10G.hdf5", presets.sha256_file(src / "log10G.hdf5"), (src / "log10G.hdf5").as_uri()
    )
    presets.register_preset(presets.Preset("test-download", "megnet", {"hdf5": good}))
    bad = presets.PresetFile("test/bad.hdf5", "0" * 64, (src / "log10G.hdf5").as_uri())
    presets.register_preset(presets.Preset("test-bad-sha", "megnet", {"hdf5": bad}))
    try:
        with pytest.raises(PresetNotAvailableError, match="downloads are disabled"):
            presets.resolve("test-download", download=False)
        path = presets.resolve("test-download")["hdf5"]
        assert path == tmp_path / "cache" / "test" / "log10G.hdf5" and path.is_file()
        assert presets.is_available("test-download")
        with pytest.raises(PresetNotAvailableError, match="sha256"):
            presets.resolve("test-bad-sha")
        assert not (tmp_path / "cache" / "test" / "bad.hdf5").exists()
    finally:
        presets._REGISTRY.pop("test-download", None)
        presets._REGISTRY.pop("test-bad-sha", None)


@needs_pretrained
def test_load_megnet_accepts_path_or_preset(tmp_path):
    from atomsets_tf.models.megnet.model import load_megnet

    a = load_megnet(PRETRAINED / "mp-2018.6.1/log10K.hdf5")
    b = load_megnet("megnet-mp-2018.6.1-log10K")
    assert a.cutoff == b.cutoff == 4.0
    assert json.loads((PRETRAINED / "mp-2018.6.1/log10K.hdf5.json").read_text())["graph_converter"]["cutoff"] == 4.0
    with pytest.raises(UnknownPresetError):
        load_megnet("definitely-not-a-model")
