"""CGAT Lightning checkpoints: safe loading (``weights_only=True``), errors, conversion to ``.keras``."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from atomsets_tf.errors import CheckpointError  # noqa: E402
from atomsets_tf.models.cgat.convert import (  # noqa: E402
    convert_checkpoint,
    export_state_dict,
    read_checkpoint,
)
from atomsets_tf.models.cgat.data import collate, structures_to_graphs  # noqa: E402
from atomsets_tf.models.cgat.elements import ElementEmbedding  # noqa: E402
from atomsets_tf.models.cgat.model import CGAT, load_cgat  # noqa: E402
from atomsets_tf.utils.io import shared_dir  # noqa: E402

SHARED = shared_dir()
GOLDEN_CKPT = None if SHARED is None else SHARED / "golden" / "cgat" / "cgat_random_seed0.ckpt"


class _WritesMarker:
    """Unpickling this object calls ``open(marker, "w")``: a stand-in for arbitrary code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_model() -> CGAT:
    keras.utils.set_random_seed(2)
    model = CGAT(elem_fea_len=8, n_graph=2, msg_heads=2, out_hidden=(16, 8), target_mean=5.0, target_std=0.5)
    for a in model.head.alphas:
        a.assign(np.full((1,), 0.5, np.float32))
    return model


def lightning_ckpt(model: CGAT, path, hparams=None) -> None:
    state = export_state_dict(model)
    sd = {("" if k in ("mean", "std") else "model.") + k: torch.from_numpy(v) for k, v in state.items()}
    torch.save({"state_dict": sd, "hyper_parameters": hparams or {"atom_fea_len": 8, "n_graph": 2},
                "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6"}, str(path))


@pytest.fixture(scope="module")
def batch():
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(0)
    emb = ElementEmbedding(["Na", "Cl", "Cu"], rng.normal(size=(3, 200)).astype(np.float32))
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cu = Structure(Lattice([[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]]), ["Cu"], [[0, 0, 0]])
    return collate(structures_to_graphs([nacl, cu], emb), embedding=emb)  # the element vectors themselves


# ----------------------------------------------------------------------------- malicious / broken files


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_pickle_runs_nothing(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"model.embedding.weight": torch.zeros(2, 2)}, "x": _WritesMarker(str(marker))}
    torch.save(payload, str(path), _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        CGAT.from_checkpoint(str(path))
    assert not marker.exists()
    # the file is really malicious: an unsafe load runs the payload
    torch.load(str(path), weights_only=False)
    assert marker.exists()


def test_plain_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": _WritesMarker(str(marker))}))
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    assert not marker.exists()


def test_corrupt_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        read_checkpoint(garbage)
    good = tmp_path / "good.ckpt"
    lightning_ckpt(tiny_model(), good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"model.conv1.weight": torch.zeros(3, 3)}}, str(foreign))
    with pytest.raises(CheckpointError, match="not a CGAT checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_incomplete_or_mismatched_state_dict(tmp_path):
    model = tiny_model()
    state = export_state_dict(model)
    missing = dict(state)
    missing.pop("graphs.1.Node.Pooling_NN.damping")
    with pytest.raises(CheckpointError, match="lacks"):
        CGAT.from_state_dict(missing)
    bad_shape = dict(state)
    bad_shape["output_nn.fc_out.bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match="output_nn.fc_out.bias"):
        CGAT.from_state_dict(bad_shape)
    extra = dict(state, **{"something.else": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match="unexpected"):
        CGAT.from_state_dict(extra)
    path = tmp_path / "wrong_hparams.ckpt"
    lightning_ckpt(model, path, hparams={"atom_fea_len": 16})
    with pytest.raises(CheckpointError, match="atom_fea_len"):
        CGAT.from_checkpoint(str(path))


# ----------------------------------------------------------------------------- round trips


def test_ckpt_round_trip_and_discarded_edge_attention_ignored(tmp_path, batch):
    model = tiny_model()
    ref = np.asarray(model(batch))
    path = tmp_path / "m.ckpt"
    state = export_state_dict(model)
    # the original's checkpoints also hold the discarded edge attention: accepted and ignored
    state["graphs.0.Edge.MH_A.fc_in.weight"] = np.ones((4, 3, 1), np.float32)
    sd = {("" if k in ("mean", "std") else "model.") + k: torch.from_numpy(v) for k, v in state.items()}
    torch.save({"state_dict": sd, "hyper_parameters": {"atom_fea_len": 8}}, str(path))
    loaded = CGAT.from_checkpoint(str(path))
    np.testing.assert_array_equal(np.asarray(loaded(batch)), ref)
    assert float(loaded.target_mean.numpy()) == 5.0 and float(loaded.target_std.numpy()) == 0.5


def test_lightning_attribute_dict_hparams_load_without_lightning(tmp_path):
    """Lightning pickles hparams as ``AttributeDict``; it loads as plain data (no Lightning code)."""
    if "pytorch_lightning" in sys.modules:
        pytest.skip("real pytorch_lightning imported")
    names = ["pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    mods = {n: types.ModuleType(n) for n in names}

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = names[-1]
    AttributeDict.__qualname__ = "AttributeDict"
    mods[names[-1]].AttributeDict = AttributeDict
    sys.modules.update(mods)
    try:
        path = tmp_path / "hp.ckpt"
        lightning_ckpt(tiny_model(), path, hparams=AttributeDict(atom_fea_len=8, n_graph=2, msg_heads=2))
    finally:
        for n in names:
            sys.modules.pop(n, None)
    state, hparams = read_checkpoint(path)
    assert hparams == {"atom_fea_len": 8, "n_graph": 2, "msg_heads": 2}
    assert "embedding.weight" in state and "mean" in state


@pytest.mark.skipif(GOLDEN_CKPT is None or not GOLDEN_CKPT.exists(), reason="golden CGAT checkpoint not available")
def test_convert_golden_checkpoint_to_keras(tmp_path):
    out = convert_checkpoint(GOLDEN_CKPT, tmp_path / "cgat_small.keras")
    loaded = keras.saving.load_model(out, safe_mode=True)
    direct = CGAT.from_checkpoint(str(GOLDEN_CKPT))
    assert loaded.get_config()["elem_fea_len"] == 32
    def rel_path(v):
        return v.path.split("/", 1)[1]

    by_path = {rel_path(v): v for v in loaded.weights}
    assert set(by_path) - {rel_path(v) for v in direct.weights} == {"element_table"}
    for v in direct.weights:
        np.testing.assert_array_equal(by_path[rel_path(v)].numpy(), v.numpy(), err_msg=v.path)
    assert isinstance(load_cgat(out), CGAT) and isinstance(load_cgat(GOLDEN_CKPT), CGAT)
    io = np.load(GOLDEN_CKPT.parent / "cgat_small_io.npz")
    assert loaded.elements is not None and len(loaded.elements) == 103
    # the stored matscholar table reproduces the golden input features
    emb = loaded.element_embedding()
    assert np.array_equal(emb["Hf"], io["in_x"][0])
