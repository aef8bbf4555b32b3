"""Reading megnet checkpoints: all published models, both naming generations, bad files."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from atomsets_tf.errors import CheckpointError
from atomsets_tf.models.megnet.checkpoint import parse_converter_json, read_checkpoint
from atomsets_tf.utils.io import shared_dir

SHARED = shared_dir()
PRETRAINED = None if SHARED is None else SHARED / "pretrained" / "megnet"
needs_pretrained = pytest.mark.skipif(
    PRETRAINED is None or not PRETRAINED.is_dir(), reason="shared/pretrained/megnet not found"
)

ALL_MODELS = [
    "mp-2019.4.1/formation_energy",
    "mp-2019.4.1/efermi",
    "mp-2019.4.1/log10K",
    "mp-2019.4.1/log10G",
    "mp-2018.6.1/formation_energy",
    "mp-2018.6.1/band_gap_regression",
    "mp-2018.6.1/band_classification",
    "mp-2018.6.1/log10K",
    "mp-2018.6.1/log10G",
]
# From shared/golden/megnet/README.md (cutoff, Set2Set T) and the .json files.
EXPECTED = {
    "mp-2019.4.1/formation_energy": (5.0, 2),
    "mp-2019.4.1/efermi": (5.0, 2),
    "mp-2019.4.1/log10K": (4.0, 3),
    "mp-2018.6.1/formation_energy": (4.0, 3),
}


def _structures(n=6):
    from tests._tables import toy_crystals

    return toy_crystals()[:n]


@needs_pretrained
@pytest.mark.parametrize("stem", ALL_MODELS)
def test_all_published_checkpoints_load_and_predict(stem):
    from atomsets_tf.models.megnet.model import MEGNet

    ckpt = read_checkpoint(PRETRAINED / f"{stem}.hdf5")
    arch = ckpt.architecture
    assert len(arch.blocks) == 3
    assert (arch.n_vocab, arch.embedding_dim, arch.n_bond_features) == (95, 16, 100)
    assert arch.naming == "keras-2.2.4"
    if stem in EXPECTED:
        cutoff, steps = EXPECTED[stem]
        assert ckpt.converter.cutoff == cutoff
        assert arch.set2set["atom"].steps == arch.set2set["bond"].steps == steps
    model = MEGNet.from_checkpoint_data(ckpt)
    pred = model.predict(_structures(3))
    assert pred.shape == (3,) and pred.dtype == np.float32 and np.all(np.isfinite(pred))
    if stem.endswith("band_classification"):
        assert np.all((pred >= 0) & (pred <= 1))  # sigmoid output


@needs_pretrained
def test_scalers_are_read_as_megnet_does():
    efermi = read_checkpoint(PRETRAINED / "mp-2019.4.1/efermi.hdf5")
    assert efermi.scaler.kind == "StandardScaler"
    assert efermi.scaler.mean == pytest.approx(2.9149992576640296)
    assert efermi.scaler.std == pytest.approx(2.7299421494308738)
    assert efermi.scaler.is_intensive is True
    fe = read_checkpoint(PRETRAINED / "mp-2019.4.1/formation_energy.hdf5")  # no target_scaler key
    assert (fe.scaler.kind, fe.scaler.mean, fe.scaler.std) == ("DummyScaler", 0.0, 1.0)
    k = read_checkpoint(PRETRAINED / "mp-2019.4.1/log10K.hdf5")  # explicit DummyScaler
    assert k.scaler.kind == "DummyScaler"


@needs_pretrained
def test_extensive_scaler_multiplies_by_n_atoms(tmp_path):
    from atomsets_tf.models.megnet.model import MEGNet

    h5 = tmp_path / "m.hdf5"
    shutil.copy(PRETRAINED / "mp-2019.4.1/formation_energy.hdf5", h5)
    data = json.loads((PRETRAINED / "mp-2019.4.1/formation_energy.hdf5.json").read_text())
    data["target_scaler"] = {
        "@module": "megnet.utils.preprocessing",
        "@class": "StandardScaler",
        "mean": 0.25,
        "std": 2.0,
        "is_intensive": False,
    }
    (tmp_path / "m.hdf5.json").write_text(json.dumps(data))
    model = MEGNet.from_checkpoint(h5)
    structures = _structures(4)
    out = model.tap(structures, ["raw_output", "prediction"])
    n_atoms = np.array([len(s) for s in structures], dtype=np.float32)
    expected = n_atoms * (out["raw_output"][:, 0] * 2.0 + 0.25)
    np.testing.assert_allclose(out["prediction"][:, 0], expected, rtol=1e-6, atol=1e-6)


def _rename_to_megnet_v2(path):
    """Rewrite a Keras 2.2.4 megnet file with megnet >= 1.2's layer names (same weights)."""
    names = {
        "embedding_1": "atom_embedding",
        "set2_set_1": "set2set_atom",
        "set2_set_2": "set2set_bond",
        "concatenate_1": "concatenate",
        "dense_19": "readout_0",
        "dense_20": "readout_1",
        "dense_21": "readout_2",
    }
    for i, b in enumerate(("atom", "bond", "state")):
        names[f"dense_{2 * i + 1}"] = f"preblock_{b}_0"
        names[f"dense_{2 * i + 2}"] = f"preblock_{b}_1"
        for blk, base in ((1, 7), (2, 13)):
            names[f"dense_{base + 2 * i}"] = f"block_{blk}_{b}_ff_0"
            names[f"dense_{base + 2 * i + 1}"] = f"block_{blk}_{b}_ff_1"
        for k in range(3):
            names[f"add_{3 * k + i + 1}"] = f"block_{k}_add_{b}"
    for k in range(3):
        names[f"meg_net_layer_{k + 1}"] = f"megnet_{k}"
    inputs = [
        "atom_int_input",
        "bond_feature_input",
        "state_default_input",
        "bond_index_1_input",
        "bond_index_2_input",
        "atom_graph_index_input",
        "bond_graph_index_input",
    ]
    names.update({f"input_{i + 1}": n for i, n in enumerate(inputs)})

    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            layer["name"] = layer["config"]["name"] = names[layer["name"]]
            for node in layer["inbound_nodes"]:
                for t in node:
                    t[0] = names[t[0]]
        for key in ("input_layers", "output_layers"):
            for t in cfg["config"][key]:
                t[0] = names[t[0]]
        cfg["config"]["layers"].reverse()  # the reader must not rely on the order either
        f.attrs["model_config"] = json.dumps(cfg).encode()
        mw = f["model_weights"]
        for old, new in names.items():
            if old not in mw:
                continue
            mw.move(old, new)
            g = mw[new]
            while old in g:  # nested name scopes: <layer>/<layer>/phi_v/...
                g.move(old, new)
                g = g[new]
            g = mw[new]
            g.attrs["weight_names"] = [
                n.decode().replace(f"{old}/", f"{new}/").encode() for n in g.attrs.get("weight_names", [])
            ]
        mw.attrs["layer_names"] = [names[n.decode()].encode() for n in mw.attrs["layer_names"]]


@needs_pretrained
def test_megnet_v2_layer_names_load_identically(tmp_path):
    from atomsets_tf.models.megnet.model import MEGNet

    src = PRETRAINED / "mp-2019.4.1/formation_energy.hdf5"
    h5 = tmp_path / "renamed.hdf5"
    shutil.copy(src, h5)
    shutil.copy(str(src) + ".json", str(h5) + ".json")
    _rename_to_megnet_v2(h5)
    ckpt = read_checkpoint(h5)
    assert ckpt.architecture.naming == "megnet>=1.2"
    assert ckpt.architecture.blocks[0].source == "megnet_0"
    structures = _structures()
    a = MEGNet.from_checkpoint(src).tap(structures, ["V1", "f", "prediction"])
    b = MEGNet.from_checkpoint_data(ckpt).tap(structures, ["V1", "f", "prediction"])
    np.testing.assert_array_equal(a["prediction"], b["prediction"])
    np.testing.assert_array_equal(a["f"], b["f"])
    for x, y in zip(a["V1"], b["V1"], strict=True):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- bad files


def _assert_one_line(exc_info):
    msg = str(exc_info.value)
    assert msg and "\n" not in msg


def test_garbage_file_raises(tmp_path):
    p = tmp_path / "garbage.hdf5"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable HDF5") as e:
        read_checkpoint(p)
    _assert_one_line(e)


def test_missing_file_raises(tmp_path):
    with pytest.raises(CheckpointError, match="no such file") as e:
        read_checkpoint(tmp_path / "nope.hdf5")
    _assert_one_line(e)


@needs_pretrained
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.95])
def test_truncated_file_raises(tmp_path, keep):
    data = (PRETRAINED / "mp-2019.4.1/formation_energy.hdf5").read_bytes()
    p = tmp_path / "trunc.hdf5"
    p.write_bytes(data[: int(len(data) * keep)])
    shutil.copy(PRETRAINED / "mp-2019.4.1/formation_energy.hdf5.json", str(p) + ".json")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    _assert_one_line(e)


def test_non_keras_hdf5_raises(tmp_path):
    p = tmp_path / "data.hdf5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(10)
    with pytest.raises(CheckpointError, match="not a Keras model file") as e:
        read_checkpoint(p)
    _assert_one_line(e)


def test_keras_model_without_megnet_layer_raises(tmp_path):
    p = tmp_path / "mlp.hdf5"
    cfg = {
        "class_name": "Model",
        "config": {
            "name": "mlp",
            "layers": [
                {
                    "name": "input_1",
                    "class_name": "InputLayer",
                    "config": {"name": "input_1", "batch_input_shape": [None, 3]},
                    "inbound_nodes": [],
                },
                {
                    "name": "dense_1",
                    "class_name": "Dense",
                    "config": {"name": "dense_1", "units": 1},
                    "inbound_nodes": [[["input_1", 0, 0, {}]]],
                },
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense_1", 0, 0]],
        },
    }
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg).encode()
    with pytest.raises(CheckpointError, match="no MEGNetLayer") as e:
        read_checkpoint(p)
    _assert_one_line(e)


def test_unknown_layer_class_raises(tmp_path):
    p = tmp_path / "lambda.hdf5"
    cfg = {
        "class_name": "Model",
        "config": {
            "layers": [
                {"name": "l", "class_name": "Lambda", "config": {"name": "l", "function": "evil"}, "inbound_nodes": []}
            ]
        },
    }
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg).encode()
    with pytest.raises(CheckpointError, match="Lambda") as e:
        read_checkpoint(p)
    _assert_one_line(e)


@needs_pretrained
@pytest.mark.parametrize(
    "mutate,match",
    [
        (
            lambda d: d.__setitem__(
                "target_scaler", {"@module": "megnet.utils.preprocessing", "@class": "PickleScaler"}
            ),
            "PickleScaler",
        ),
        (lambda d: d["graph_converter"].__setitem__("@class", "system"), "system"),
        (lambda d: d["graph_converter"].__setitem__("@module", "os"), "module 'os'"),
        (lambda d: d["graph_converter"]["bond_converter"].__setitem__("@class", "EvilDistance"), "EvilDistance"),
        (lambda d: d["graph_converter"]["atom_converter"].__setitem__("@class", "EmbeddingMap"), "EmbeddingMap"),
        (lambda d: d["graph_converter"].__setitem__("cutoff", "5; rm -rf"), "cutoff"),
        (lambda d: d.pop("graph_converter"), "graph_converter"),
    ],
)
def test_json_allow_list(tmp_path, mutate, match):
    h5 = tmp_path / "m.hdf5"
    shutil.copy(PRETRAINED / "mp-2019.4.1/efermi.hdf5", h5)
    data = json.loads((PRETRAINED / "mp-2019.4.1/efermi.hdf5.json").read_text())
    mutate(data)
    (tmp_path / "m.hdf5.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=match) as e:
        read_checkpoint(h5)
    _assert_one_line(e)


@needs_pretrained
def test_missing_or_invalid_json_raises(tmp_path):
    h5 = tmp_path / "m.hdf5"
    shutil.copy(PRETRAINED / "mp-2019.4.1/formation_energy.hdf5", h5)
    with pytest.raises(CheckpointError, match="missing") as e:
        read_checkpoint(h5)
    _assert_one_line(e)
    (tmp_path / "m.hdf5.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON") as e:
        read_checkpoint(h5)
    _assert_one_line(e)


def test_parse_converter_json_plain_lists_and_defaults():
    conv, scaler, meta = parse_converter_json(
        {
            "graph_converter": {
                "@module": "megnet.data.crystal",
                "@class": "CrystalGraph",
                "cutoff": 4.5,
                "bond_converter": {
                    "@module": "megnet.data.graph",
                    "@class": "GaussianDistance",
                    "centers": [0.0, 1.0, 2.0],
                    "width": 0.5,
                },
            }
        }
    )
    assert (conv.cutoff, conv.centers, conv.width) == (4.5, [0.0, 1.0, 2.0], 0.5)
    assert scaler.kind == "DummyScaler" and meta == {}
