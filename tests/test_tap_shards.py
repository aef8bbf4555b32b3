"""Sharded tap folders (``atomsets-tf tap -o DIR/``): layout, equality with the one-file output, flat memory,
resume, and errors naming the file."""

from __future__ import annotations

import json
import math
import re
import tracemalloc
import weakref

import numpy as np
import pytest

import atomsets_tf.models.loading as loading
from atomsets_tf.cli import main
from atomsets_tf.data.io import Table
from atomsets_tf.data.taps import (
    INDEX_FILE,
    PARTIAL_INDEX_FILE,
    is_tap_folder,
    load_tap_folder,
    read_tap_index,
    read_tap_shards,
    shard_name,
    unpack_taps,
)
from atomsets_tf.errors import DataFormatError, RunSettingsError
from atomsets_tf.workflows.outputs import (
    TapShardWriter,
    write_tap_folder,
    write_tap_shards,
    write_taps_npz,
)
from tests._tables import toy_crystals, write_matbench_json
from tests.test_cli import error_lines


def tiny_megnet():
    """A randomly initialised MEGNet of width 4 (the one of the MEGNet class docstring)."""
    from atomsets_tf.models.megnet.checkpoint import BlockSpec, DenseSpec, Set2SetSpec
    from atomsets_tf.models.megnet.model import (
        BRANCHES,
        GraphConverterConfig,
        MEGNet,
        MEGNetArchitecture,
        ScalerConfig,
        build_keras_model,
    )

    none = {b: [] for b in BRANCHES}
    block = BlockSpec("block", none, [4, 4], [4, 4], [4, 4], "softplus2", "mean", {b: f"add_{b}" for b in BRANCHES})
    arch = MEGNetArchitecture(
        n_vocab=95, embedding_dim=4, embedding_source="embedding", n_bond_features=10, n_state_features=2,
        preblock={b: [DenseSpec(f"pre_{b}", 4, "softplus2")] for b in BRANCHES}, blocks=[block],
        set2set={b: Set2SetSpec(f"set2set_{b}", 2, 4, "tanh", "hard_sigmoid") for b in ("atom", "bond")},
        concat_order=["atom", "bond", "state"], readout=[DenseSpec("output", 1, None)])
    converter = GraphConverterConfig(cutoff=4.0, centers=list(np.linspace(0.0, 5.0, 10)), width=0.5)
    keras_model, taps, _ = build_keras_model(arch, converter, ScalerConfig())
    return MEGNet(keras_model, converter.cutoff, taps, architecture=arch)


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    """A tiny MEGNet saved as .keras and 15 structures (the toy crystals, repeated) as matbench JSON."""
    folder = tmp_path_factory.mktemp("tap-shards")
    crystals = toy_crystals(with_nacl=True)
    structures = [crystals[k % len(crystals)] for k in range(15)]
    table = Table([f"s-{k:02d}" for k in range(15)], structures, np.arange(15.0), "structure", "e")
    model_path = folder / "tiny.keras"
    tiny_megnet().save(model_path)
    return model_path, write_matbench_json(table, folder / "data.json", "e"), table


def test_folder_output_equals_the_one_file_output(tmp_path, model_and_data):
    model_path, data, table = model_and_data
    one_file, folder = tmp_path / "taps.npz", tmp_path / "shards"
    tap = ["tap", str(model_path), str(data), "--layer", "V1", "--layer", "f"]
    assert main([*tap, "-o", str(one_file)]) == 0
    assert main([*tap, "-o", f"{folder}/", "--shard-size", "4"]) == 0
    with np.load(one_file) as npz:
        ids, taps = unpack_taps({k: npz[k] for k in npz.files})
    folder_ids, folder_taps = load_tap_folder(folder)
    assert is_tap_folder(folder) and not is_tap_folder(one_file)
    assert folder_ids == ids == table.ids
    np.testing.assert_allclose(folder_taps["f"], taps["f"], rtol=1e-5, atol=1e-6)  # other batches: other kernels
    assert len(folder_taps["V1"]) == len(taps["V1"]) == len(table)
    for a, b, s in zip(folder_taps["V1"], taps["V1"], table.inputs):
        assert a.shape == (len(s), 4)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)  # other batches: other padding

    index = json.loads((folder / INDEX_FILE).read_text())
    n_shards = math.ceil(len(table) / 4)
    assert [s["file"] for s in index["shards"]] == [shard_name(k) for k in range(n_shards)]
    assert sorted(p.name for p in folder.glob("taps-*.npz")) == [shard_name(k) for k in range(n_shards)]
    assert [s["first"] for s in index["shards"]] == list(range(0, len(table), 4))
    assert index["n"] == len(table) and index["taps"] == {"V1": {"level": "atom", "width": 4},
                                                          "f": {"level": "structure", "width": taps["f"].shape[1]}}
    assert index["model"] == str(model_path) and index["data"] == str(data)
    assert not (folder / PARTIAL_INDEX_FILE).exists() and not (folder / ".lock").exists()
    for (shard_ids, shard_taps), shard in zip(read_tap_shards(folder), index["shards"]):
        assert shard_ids == table.ids[shard["first"]: shard["first"] + shard["n"]]
        assert len(shard_taps["V1"]) == len(shard_taps["f"]) == shard["n"]


class FakeFamily:
    """A family whose taps are big constant arrays; it records the chunks it is asked for and, at each call,
    how many arrays it returned before are still alive."""

    rows, width = 50, 64

    def __init__(self, fail_at: int | None = None):
        self.asked: list[list[str]] = []
        self.alive_at_call: list[int] = []
        self._returned: list[weakref.ref] = []
        self.fail_at = fail_at

    def tap_table(self, model, table, names, batch_size=32, progress=False):
        self.alive_at_call.append(sum(r() is not None for r in self._returned))
        if self.fail_at is not None and len(self.asked) == self.fail_at:
            raise DataFormatError(f"bad entry {table.ids[0]}")
        self.asked.append(list(table.ids))
        first = int(table.ids[0].split("-")[1]) if len(table) else 0
        atoms = [np.full((self.rows, self.width), first + k, np.float32) for k in range(len(table))]
        structure = np.repeat(np.arange(first, first + len(table), dtype=np.float32)[:, None], 3, axis=1)
        self._returned += [weakref.ref(a) for a in atoms] + [weakref.ref(structure)]
        return {"A": atoms, "s": structure}


def fake_table(n: int) -> Table:
    return Table([f"e-{k:05d}" for k in range(n)], [None] * n, None, "structure")


@pytest.fixture()
def fake_family(monkeypatch):
    def install(fail_at=None):
        family = FakeFamily(fail_at)
        monkeypatch.setattr(loading, "family_of", lambda model: family)
        return family
    return install


def _peak_bytes(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_with_a_folder_output(tmp_path, fake_family):
    n, shard = 200, 10
    table = fake_table(n)
    chunk_bytes = shard * FakeFamily.rows * FakeFamily.width * 4
    family = fake_family()
    folder_peak = _peak_bytes(lambda: write_tap_folder(object(), table, ["A", "s"], tmp_path / "dir", shard_size=shard))
    assert max(len(ids) for ids in family.asked) == shard and len(family.asked) == n // shard
    assert max(family.alive_at_call) == 0  # every chunk's results were freed before the next one was tapped

    family = fake_family()
    one_file_peak = _peak_bytes(lambda: write_taps_npz(tmp_path / "one.npz", table.ids,
                                                       loading.tap_table(object(), table, ["A", "s"])))
    # The whole table's results (n / shard chunks) are alive at once on the one-file path, one chunk here.
    assert one_file_peak > (n // shard) * chunk_bytes
    # Here: the chunk being written, its packed copy and the writer's buffers, whatever the number of chunks.
    assert folder_peak < 8 * chunk_bytes < one_file_peak / 2
    ids, taps = load_tap_folder(tmp_path / "dir")
    assert ids == table.ids and [float(a[0, 0]) for a in taps["A"]] == list(range(n))
    np.testing.assert_array_equal(taps["s"], np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1))


def test_an_interrupted_folder_resumes_from_its_intact_shards(tmp_path, fake_family):
    table, folder = fake_table(23), tmp_path / "dir"
    fake_family(fail_at=3)
    with pytest.raises(DataFormatError, match="bad entry e-00015"):
        write_tap_folder(object(), table, ["A", "s"], folder, shard_size=5)
    assert not is_tap_folder(folder) and (folder / PARTIAL_INDEX_FILE).is_file()
    with pytest.raises(DataFormatError, match=INDEX_FILE):
        load_tap_folder(folder)

    (folder / shard_name(2)).write_bytes(b"damaged")  # shards 0 and 1 are kept, 2 is tapped again
    family = fake_family()
    write_tap_folder(object(), table, ["A", "s"], folder, shard_size=5)
    assert [ids[0] for ids in family.asked] == ["e-00010", "e-00015", "e-00020"]
    ids, taps = load_tap_folder(folder)
    assert ids == table.ids and [float(a[0, 0]) for a in taps["A"]] == list(range(23))
    assert not (folder / PARTIAL_INDEX_FILE).exists()

    with pytest.raises(RunSettingsError, match=str(folder)):
        write_tap_folder(object(), table, ["A"], folder, shard_size=5)  # other taps: not the same run
    write_tap_shards(folder, iter([(table.ids[:2], {"s": np.zeros((2, 3))})]), shard_size=2)  # replaces it
    assert load_tap_folder(folder)[0] == table.ids[:2]


def test_corrupt_or_missing_shards_and_index_are_named(tmp_path, fake_family):
    table, folder = fake_table(9), tmp_path / "dir"
    fake_family()
    write_tap_folder(object(), table, ["A", "s"], folder, shard_size=4)
    shard = folder / shard_name(1)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=f"{shard}.*corrupt"):
        load_tap_folder(folder)
    shard.unlink()
    with pytest.raises(DataFormatError, match=f"{shard}.*cannot be read"):
        list(read_tap_shards(folder))
    (folder / INDEX_FILE).write_text("{not json")
    with pytest.raises(DataFormatError, match=str(folder / INDEX_FILE)):
        load_tap_folder(folder)
    (folder / INDEX_FILE).unlink()
    with pytest.raises(DataFormatError, match=f"{folder / INDEX_FILE} not found"):
        load_tap_folder(folder)


def test_the_writer_refuses_chunks_of_another_size(tmp_path):
    with TapShardWriter(tmp_path / "dir", 4) as writer:
        writer.write(["a", "b"], {"s": np.zeros((2, 3))})
        with pytest.raises(ValueError, match="only the last one fewer"):
            writer.write(["c"], {"s": np.zeros((1, 3))})


def test_cli_folder_output_errors(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(loading, "load_model", no_work)
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    cases = [([f"{a_file}/taps/"], "is a file, not a folder"),
             ([str(tmp_path / "t.npz"), "--shard-size", "8"], "--shard-size needs a folder output")]
    for output, message in cases:
        assert main(["tap", "model.keras", "matbench_steels", "--layer", "V1", "-o", *output]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0] and output[0].rstrip("/") in lines[0]


def test_model_level_taps_are_kept_once_and_the_folder_is_locked(tmp_path):
    from atomsets_tf.errors import RunLockedError

    edge_table = np.arange(25 * 4, dtype=np.float32).reshape(25, 4)  # as CGAT's edge_fea_table_k: not per entry
    chunks = [(["a", "b", "c"], {"E": edge_table, "s": np.zeros((3, 2))}), (["d"], {"E": edge_table,
                                                                                   "s": np.ones((1, 2))})]
    with TapShardWriter(tmp_path / "dir", 3) as writer:
        with pytest.raises(RunLockedError, match=str(tmp_path / "dir")):
            with TapShardWriter(tmp_path / "dir", 3):
                pass
        writer.write_all(iter(chunks))
    ids, taps = load_tap_folder(tmp_path / "dir")
    assert ids == ["a", "b", "c", "d"] and writer.index["taps"]["E"] == {"level": "model", "width": 4}
    np.testing.assert_array_equal(taps["E"], edge_table)
    np.testing.assert_array_equal(taps["s"], [[0, 0], [0, 0], [0, 0], [1, 1]])


def _edit_index(folder, edit) -> None:
    index = json.loads((folder / INDEX_FILE).read_text())
    edit(index)
    (folder / INDEX_FILE).write_text(json.dumps(index))


def test_shards_that_lead_out_of_the_folder_or_differ_in_size_are_refused(tmp_path, fake_family):
    table, folder = fake_table(9), tmp_path / "dir"
    fake_family()
    write_tap_folder(object(), table, ["A", "s"], folder, shard_size=4)
    outside = tmp_path / "x.npz"  # a copy of shard 0 beside the folder: its sha256 and size match
    outside.write_bytes((folder / shard_name(0)).read_bytes())
    for name in ("../x.npz", str(outside)):
        _edit_index(folder, lambda index, name=name: index["shards"][0].update(file=name))
        with pytest.raises(DataFormatError, match=f"{re.escape(repr(name))}.*a path.*{re.escape(str(folder))}"):
            read_tap_index(folder)
    _edit_index(folder, lambda index: index["shards"][0].update(file=shard_name(0)))
    (folder / shard_name(0)).unlink()
    (folder / shard_name(0)).symlink_to(outside)
    with pytest.raises(DataFormatError, match=f"{shard_name(0)}.*symlink that leads out"):
        load_tap_folder(folder)
    (folder / shard_name(0)).unlink()
    (folder / shard_name(0)).write_bytes(outside.read_bytes())
    _edit_index(folder, lambda index: index["shards"][1].update(bytes=index["shards"][1]["bytes"] - 1))
    with pytest.raises(DataFormatError, match=f"{shard_name(1)}.* bytes, .*{INDEX_FILE} records"):
        load_tap_folder(folder)


def test_changed_structures_under_the_same_ids_are_not_resumed(tmp_path, fake_family):
    ids = [f"e-{k:05d}" for k in range(6)]
    inputs = [{"species": ["Na"], "coords": [[0.0, 0.0, float(k)]]} for k in range(6)]
    folder = tmp_path / "dir"
    fake_family()
    write_tap_folder(object(), Table(ids, inputs, None, "structure"), ["A", "s"], folder, shard_size=4)
    reordered = [dict(reversed(list(entry.items()))) for entry in inputs]  # key order is not content
    write_tap_folder(object(), Table(ids, reordered, None, "structure"), ["A", "s"], folder, shard_size=4)
    changed = [*inputs[:5], {"species": ["Cl"], "coords": [[0.0, 0.0, 5.0]]}]
    with pytest.raises(RunSettingsError, match=str(folder)):
        write_tap_folder(object(), Table(ids, changed, None, "structure"), ["A", "s"], folder, shard_size=4)
