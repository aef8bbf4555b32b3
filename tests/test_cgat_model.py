"""CGAT port: data preparation errors, batching invariances, the elemental-crystal fix, taps, saving."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from pymatgen.core import Lattice, Structure  # noqa: E402

from atomsets_tf.data.elements import ELEMENT_SYMBOLS, atomic_numbers_of, element_symbols_of  # noqa: E402
from atomsets_tf.errors import (  # noqa: E402
    DataFormatError,
    EmptyStructureError,
    IsolatedAtomError,
    TooFewNeighboursError,
    UnknownElementError,
    UnknownTapError,
)
from atomsets_tf.models.cgat.data import (  # noqa: E402
    INPUT_KEYS,
    CGATGraph,
    GraphMemo,
    collate,
    structure_to_graph,
    structures_to_graphs,
)
from atomsets_tf.models.cgat.elements import ElementEmbedding  # noqa: E402
from atomsets_tf.models.cgat.model import CGAT, cgat_l1_loss  # noqa: E402

SYMBOLS = ["O", "Na", "Si", "Cl", "Cu"]
#: The element embedding of these tests (the models look it up; no matscholar file needed).
EMBEDDING = ElementEmbedding(SYMBOLS, np.random.default_rng(0).normal(size=(len(SYMBOLS), 200)).astype(np.float32),
                             name="test")


@pytest.fixture(scope="module")
def embedding() -> ElementEmbedding:
    return EMBEDDING


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    from tests._tables import cgat_toy_crystals

    return list(cgat_toy_crystals().values())


def small_model(**kwargs) -> CGAT:
    keras.utils.set_random_seed(1)
    cfg = dict(elem_fea_len=8, n_graph=2, msg_heads=2, out_hidden=(16, 16, 8), target_mean=3.0, target_std=2.0)
    cfg.update(kwargs)
    model = CGAT(**cfg)
    model.set_element_embedding(EMBEDDING)
    for a in model.head.alphas:  # exercise the residual branches (alpha = 0 at init)
        a.assign(np.full((1,), 0.7, np.float32))
    return model


@pytest.fixture(scope="module")
def graphs(structures, embedding):
    return structures_to_graphs(structures, embedding, ids=["nacl", "si", "sio2", "cu"])


# ----------------------------------------------------------------------------- data preparation


def test_graph_layout(graphs):
    nacl = graphs[0]
    assert nacl.atom_z.shape == (8,) and nacl.nbr_idx.shape == (8, 24) and nacl.nbr_rank.shape == (8, 24)
    assert nacl.atom_z.dtype == np.int32 and sorted(set(nacl.atom_z.tolist())) == [11, 17]
    assert nacl.elem_z.tolist() == [11, 17] and nacl.elem_z.dtype == np.int32
    # rocksalt: 6 nearest (Cl), 12 next (Na), then 8 (Cl): ranks 1, 2, 3
    assert np.array_equal(nacl.nbr_rank[0], [1] * 6 + [2] * 12 + [3] * 6)
    assert nacl.elements == ["Na", "Cl"] and np.allclose(nacl.elem_weights, [0.5, 0.5])
    assert graphs[3].elements == ["Cu"] and graphs[3].nbr_idx.max() == 0  # the lone site is its own neighbour
    batch = collate(graphs)
    assert set(batch) == set(INPUT_KEYS)
    assert batch["atom_z"].shape == (4, 8) and batch["elem_z"].shape == (4, 4)
    assert batch["atom_z"].dtype == batch["elem_z"].dtype == np.int32
    assert batch["atom_mask"].sum() == sum(g.n_atoms for g in graphs) == np.count_nonzero(batch["atom_z"])
    assert batch["nbr_idx"].dtype == np.int32 and batch["elem_weights"][3].tolist() == [1, 0, 0, 0]
    assert batch["elem_z"][3].tolist() == [29, 0, 0, 0]


def site_feature_batch(structures, graphs, embedding) -> dict[str, np.ndarray]:
    """The old float layout, formed from each site's symbol and the embedding's rows (not from the graphs'
    atomic numbers): ``atom_fea`` / ``elem_fea`` zero-padded as the original code's inputs."""
    batch = collate(graphs)
    atom_fea = np.zeros(batch["atom_mask"].shape + (embedding.dim,), np.float32)
    elem_fea = np.zeros(batch["elem_weights"].shape + (embedding.dim,), np.float32)
    for i, (s, g) in enumerate(zip(structures, graphs, strict=True)):
        atom_fea[i, : len(s)] = [embedding[site.specie.symbol] for site in s]
        elem_fea[i, : len(g.elements)] = [embedding[e] for e in dict.fromkeys(site.specie.symbol for site in s)]
    del batch["atom_z"], batch["elem_z"]
    return {**batch, "atom_fea": atom_fea, "elem_fea": elem_fea}


@pytest.mark.parametrize("static_shapes", [False, True])
@pytest.mark.parametrize("stored", [True, False])
def test_atomic_numbers_and_float_features_give_identical_outputs(graphs, structures, embedding, stored,
                                                                  static_shapes):
    """The model's lookup by atomic number reproduces the float inputs bit for bit (outputs, taps, gradients),
    with the stored table (``elements``) and with an embedding that is only set."""
    model = small_model(elements=SYMBOLS if stored else None, static_shapes=static_shapes)
    model.set_element_embedding(embedding)
    floats = site_feature_batch(structures, graphs, embedding)
    for key, value in collate(graphs, embedding=embedding).items():
        np.testing.assert_array_equal(value, floats[key])
    batch = collate(graphs)
    np.testing.assert_array_equal(np.asarray(model(batch)), np.asarray(model(floats)))
    names = ["node_fea_0", "node_fea_2", "roost_embed_out", "roost_crys_fea", "out"]
    for name, value in model.compute_taps(batch, names).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(model.compute_taps(floats, [name])[name]))
    grads = []
    for inputs in (batch, floats):
        with tf.GradientTape() as tape:
            loss = cgat_l1_loss(np.zeros(4, np.float32), model(inputs, training=True))
        grads.append(tape.gradient(loss, model.trainable_variables))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_element_z_table_rows(embedding):
    stored = small_model(elements=SYMBOLS)
    stored.set_element_embedding(embedding)
    given = small_model()
    given.set_element_embedding(embedding)
    for model in (stored, given):
        table = np.asarray(model.element_z_table())
        assert table.shape == (119, 200)
        np.testing.assert_array_equal(table[[8, 11, 14, 17, 29]], embedding.table)
        others = np.setdiff1d(np.arange(119), [8, 11, 14, 17, 29])  # padding (0) and elements not in it
        assert not table[others].any()
    # another set of symbols than the stored ones: that embedding is used
    other = ElementEmbedding(["Fe"], np.full((1, 200), 2.0, np.float32), name="iron")
    stored.set_element_embedding(other)
    assert np.asarray(stored.element_z_table())[26].tolist() == [2.0] * 200
    assert not np.asarray(stored.element_z_table())[11].any()


def test_graph_record_round_trip(graphs):
    for g in graphs:
        record = g.to_record()
        assert set(record) == {"atom_z", "nbr_idx", "nbr_rank", "elem_z", "elem_weights"}
        flat = {k: v.reshape(-1) for k, v in record.items()}  # as a tf.train.Example gives them back
        for r in (record, flat):
            back = CGATGraph.from_record(r, structure_id=g.structure_id)
            assert back.elements == g.elements and back.structure_id == g.structure_id
            for key in record:
                assert getattr(back, key).dtype == record[key].dtype
                np.testing.assert_array_equal(getattr(back, key), record[key])
    bad = {**graphs[0].to_record(), "nbr_rank": graphs[0].nbr_rank[:, :5]}
    with pytest.raises(DataFormatError, match="^mb-1: record arrays do not fit"):
        CGATGraph.from_record(bad, "mb-1")
    with pytest.raises(DataFormatError, match="lacks elem_z"):
        CGATGraph.from_record({k: v for k, v in graphs[0].to_record().items() if k != "elem_z"})
    with pytest.raises(DataFormatError, match="atomic number 200 is no element"):
        CGATGraph.from_record({**graphs[0].to_record(), "elem_z": np.array([11, 200], np.int32)}, "mb-2")


def test_graph_record_through_tf_train_example(graphs):
    """A record stored as a ``tf.train.Example`` (flat int64 / float lists) reads back as the same graph."""
    g = graphs[2]
    record = g.to_record()
    features = {k: tf.train.Feature(float_list=tf.train.FloatList(value=v.ravel())) if v.dtype == np.float32
                else tf.train.Feature(int64_list=tf.train.Int64List(value=v.ravel())) for k, v in record.items()}
    blob = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
    spec = {k: tf.io.VarLenFeature(tf.float32 if v.dtype == np.float32 else tf.int64) for k, v in record.items()}
    parsed = {k: tf.sparse.to_dense(v).numpy() for k, v in tf.io.parse_single_example(blob, spec).items()}
    back = CGATGraph.from_record(parsed, "sio2")
    assert back.elements == g.elements == ["Si", "O"]
    for key in record:
        np.testing.assert_array_equal(getattr(back, key), record[key])
    np.testing.assert_array_equal(collate([back])["atom_z"], collate([g])["atom_z"])


def test_element_symbols_without_pymatgen_match_pymatgen():
    from pymatgen.core import Element

    assert ELEMENT_SYMBOLS[1:] == tuple(Element.from_Z(z).symbol for z in range(1, 119))
    assert element_symbols_of(atomic_numbers_of(["Og", "H", "Cu"])) == ["Og", "H", "Cu"]


def test_too_few_neighbours_raises(structures, embedding):
    with pytest.raises(TooFewNeighboursError, match="site 0 has .* neighbours within 3.0"):
        structure_to_graph(structures[0], embedding, radius=3.0, structure_id="nacl")
    assert issubclass(TooFewNeighboursError, IsolatedAtomError) and issubclass(TooFewNeighboursError, ValueError)


def test_unknown_element_raises(embedding):
    fe = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(UnknownElementError, match="Fe"):
        structure_to_graph(fe, embedding)


def test_empty_structure_raises(embedding):
    with pytest.raises(EmptyStructureError):
        structure_to_graph(Structure(Lattice.cubic(3.0), [], []), embedding)


# ----------------------------------------------------------------------------- batching


def test_result_independent_of_batch_and_padding(graphs):
    model = small_model()
    together = np.asarray(model(collate(graphs)))
    alone = np.concatenate([np.asarray(model(collate([g]))) for g in graphs])
    padded = np.asarray(model(collate(graphs, atom_multiple=32, elem_multiple=16)))
    order = [2, 0, 3, 1]
    permuted = np.asarray(model(collate([graphs[i] for i in order])))
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(together, padded, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(together[order], permuted, rtol=1e-5, atol=1e-6)
    # static-shape mode (every padded slot computed, for XLA) gives the same numbers
    static = small_model(static_shapes=True)
    np.testing.assert_allclose(np.asarray(static(collate(graphs, atom_multiple=16))), together, rtol=1e-5, atol=1e-6)
    # garbage in padding rows must not leak into real crystals
    batch = collate(graphs, atom_multiple=16)
    pad = batch["atom_mask"] == 0
    batch["atom_z"][pad] = 11
    batch["nbr_rank"][pad] = 5
    np.testing.assert_allclose(np.asarray(model(batch)), together, rtol=1e-5, atol=1e-6)


def test_elemental_crystal_last_in_batch_does_not_crash(graphs):
    """Golden README surprise 11: the original crashes when the last crystal is elemental. Fixed here."""
    model = small_model()
    nacl, cu = graphs[0], graphs[3]
    out = np.asarray(model(collate([nacl, cu])))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.asarray(model(collate([cu, nacl])))[::-1], rtol=1e-5, atol=1e-6)
    # an element without partners passes the ROOST message layers unchanged (as in the original)
    taps = model.compute_taps(collate([nacl, cu]), ["roost_embed_out", "roost_elem_fea_3"])
    first = np.concatenate([np.asarray(taps["roost_embed_out"])[1, 0], [1.0]])
    np.testing.assert_allclose(np.asarray(taps["roost_elem_fea_3"])[1, 0], first, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- taps, predict, normalisation


def test_taps(graphs, structures, embedding):
    model = small_model(elements=SYMBOLS)
    model.set_element_embedding(embedding)
    names = ["node_fea_0", "node_fea_2", "roost_crys_fea", "graph_embedding", "edge_fea_table_1",
             "roost_elem_fea_1", "out"]
    taps = model.tap(structures, names)
    assert [t.shape for t in taps["node_fea_2"]] == [(g.n_atoms, 8) for g in graphs]
    assert [t.shape for t in taps["roost_elem_fea_1"]] == [(len(g.elem_weights), 8) for g in graphs]
    assert taps["graph_embedding"].shape == (4, 16) and taps["roost_crys_fea"].shape == (4, 8)
    assert taps["edge_fea_table_1"].shape == (25, 128)
    np.testing.assert_allclose(taps["out"], np.asarray(model(collate(graphs))), rtol=1e-5, atol=1e-6)
    with pytest.raises(UnknownTapError, match="node_fea_9"):
        model.compute_taps(collate(graphs), ["node_fea_9"])


def test_predict_structures_denormalises(graphs, structures, embedding):
    model = small_model(elements=SYMBOLS)
    model.set_element_embedding(embedding)
    pred = model.predict(structures)
    raw = np.asarray(model(collate(graphs)))[:, 0]
    np.testing.assert_allclose(pred, raw * 2.0 + 3.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict_structures(graphs, batch_size=3), pred, rtol=1e-5, atol=1e-5)


def test_fit_normalisation_matches_torch_std():
    model = small_model()
    mean, std = model.fit_normalisation([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert float(model.target_std.numpy()) == pytest.approx(std, rel=1e-6)


def test_damping_is_clamped_in_forward_with_straight_through_gradient(graphs):
    model = small_model()
    hyper = model.node_layers[1].hyper
    batch = collate(graphs)
    hyper.damping.assign([1.0])
    at_one = np.asarray(model(batch))
    hyper.damping.assign([1.7])
    with tf.GradientTape() as tape:
        out = model(batch)
        loss = tf.reduce_sum(out[:, 0])
    np.testing.assert_allclose(np.asarray(out), at_one, rtol=1e-6, atol=1e-7)
    grad = tape.gradient(loss, hyper.damping)
    assert grad is not None and float(tf.abs(grad)[0]) > 0


def test_keras_fit_runs(graphs):
    model = small_model()
    batch = collate(graphs)
    y = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=cgat_l1_loss)
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    hist = model.fit(batch, y, batch_size=2, epochs=1, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables, strict=True)]
    assert sum(changed) > len(changed) // 2
    assert not any(v is w for v in model.trainable_variables for w in model.edge_layers[-1].weights)


def test_freeze_graph_embedding_trains_head_only():
    model = small_model()
    head = {id(v) for v in model.head.trainable_variables}
    model.freeze_graph_embedding()
    assert {id(v) for v in model.trainable_variables} == head
    model.freeze_graph_embedding(False)
    assert len(model.trainable_variables) > len(head)
    assert not any(v is w for v in model.trainable_variables for w in model.edge_layers[-1].weights)


# ----------------------------------------------------------------------------- saving


def test_keras_save_load_safe_mode(tmp_path, graphs, embedding):
    model = small_model(elements=SYMBOLS)
    model.set_element_embedding(embedding)
    path = tmp_path / "cgat.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, CGAT)
    batch = collate(graphs)
    np.testing.assert_array_equal(np.asarray(loaded(batch)), np.asarray(model(batch)))
    assert float(loaded.target_mean.numpy()) == 3.0 and float(loaded.target_std.numpy()) == 2.0
    np.testing.assert_array_equal(loaded.element_embedding().table, embedding.table)
    a = model.compute_taps(batch, ["node_fea_2", "roost_crys_fea"])
    b = loaded.compute_taps(batch, ["node_fea_2", "roost_crys_fea"])
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]


# ----------------------------------------------------------------------------- tf.distribute

_DISTRIBUTE_SCRIPT = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from pymatgen.core import Lattice, Structure
from atomsets_tf.models.cgat.data import collate, structures_to_graphs
from atomsets_tf.models.cgat.elements import ElementEmbedding
from atomsets_tf.models.cgat.model import CGAT

emb = ElementEmbedding(["Na", "Cl", "Cu"], np.random.default_rng(0).normal(size=(3, 200)).astype(np.float32))
nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
cu = Structure(Lattice([[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]]), ["Cu"], [[0, 0, 0]])
batch = collate(structures_to_graphs([nacl, cu, cu, nacl], emb))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(3)
    model = CGAT(elem_fea_len=8, n_graph=2, msg_heads=2, out_hidden=(8,))
    model.set_element_embedding(emb)
single = np.asarray(model(batch))
ds = tf.data.Dataset.from_tensor_slices(batch).batch(4)
dist = strategy.experimental_distribute_dataset(ds)
for b in dist:
    per_replica = strategy.run(model, args=(b,))
    out = np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(per_replica)])
assert out.shape == (4, 2), out.shape
np.testing.assert_allclose(out, single, rtol=1e-5, atol=1e-6)
print("DISTRIBUTE_OK")
"""


def test_mirrored_strategy_splits_padded_batch():
    """A global padded batch split over two replicas gives the single-device numbers (own process:
    logical CPU devices must be configured before TensorFlow initialises)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_DISTRIBUTE_SCRIPT)], capture_output=True,
                          text=True, timeout=300)
    assert "DISTRIBUTE_OK" in proc.stdout, proc.stderr[-3000:]


def test_graphs_are_memoised_by_structure_and_checked_against_the_embedding(structures, embedding):
    first = structures_to_graphs(structures, embedding)
    other = ElementEmbedding(embedding.symbols, embedding.table * 2, name="other values")
    assert all(a is b for a, b in zip(first, structures_to_graphs(structures, other), strict=True))
    assert all(a is b for a, b in zip(first, structures_to_graphs(structures, set(SYMBOLS)), strict=True))
    # a memoised graph is still refused by an embedding without one of its elements
    with pytest.raises(UnknownElementError, match="^nacl: element 'Na' is not in the given element set"):
        structures_to_graphs(structures[:1], {"Cl", "O"}, ids=["nacl"])
    structures_to_graphs(structures[:1], [11, 17], ids=["nacl"])  # atomic numbers do as well


def test_graph_memo_is_bounded_by_bytes(graphs):
    size = [GraphMemo.entry_bytes(g) for g in graphs]
    memo = GraphMemo(max_bytes=size[0] + size[1])
    keys = [(i,) for i in range(4)]
    memo.put(keys[0], "s0", graphs[0])
    memo.put(keys[1], "s1", graphs[1])
    assert len(memo) == 2 and memo.nbytes == size[0] + size[1]
    assert memo.get(keys[0], "s0") is graphs[0]  # now the most recently used
    assert memo.get(keys[0], "another structure") is None
    memo.put(keys[2], "s2", graphs[2])  # too many bytes: the least recently used (graph 1) goes first
    assert memo.get(keys[1], "s1") is None and memo.get(keys[2], "s2") is graphs[2]
    assert memo.nbytes <= memo.max_bytes
    assert graphs[0].nbytes == sum(a.nbytes for a in graphs[0].to_record().values())
