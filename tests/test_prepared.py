"""Prepared datasets (data.prepared_writer, data.prepared): writing, resuming, reading, streaming, refusing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from _prepared_toy import TOY_SCHEMA, ToyBuilder, toy_entries

from atomsets_tf.data.prepared import (
    MANIFEST,
    FieldSpec,
    PreparedDataset,
    RecordSchema,
)
from atomsets_tf.data.prepared_writer import prepare_dataset
from atomsets_tf.errors import AtomSetsError, CorruptShardError, PreparedDatasetError, RecordSchemaError

N_ENTRIES = 40
BAD = "e007"  # its z holds a 0: the toy builder refuses it


def _data():
    ids, entries = toy_entries(N_ENTRIES)
    entries[int(BAD[1:])]["z"][0] = 0
    targets = np.linspace(-1.0, 1.0, N_ENTRIES)
    return ids, entries, targets


def _prepare(folder: Path, **kwargs) -> dict:
    ids, entries, targets = _data()
    options = {"parent": {"family": "toy", "sha256": "ab" * 32}, "shard_size": 8, "progress": False, **kwargs}
    builder = options.pop("builder", ToyBuilder())
    return prepare_dataset(ids, entries, targets, folder, builder, **options)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    folder = tmp_path_factory.mktemp("prepared") / "toy"
    _prepare(folder)
    return PreparedDataset.open(folder)


def _records_by_position(dataset: PreparedDataset) -> dict[int, dict]:
    return dict(zip(dataset.positions.tolist(), dataset.records()))


def test_round_trip_records_equal_built_records(prepared):
    ids, entries, targets = _data()
    builder = ToyBuilder()
    good = [k for k, i in enumerate(ids) if i != BAD]
    assert prepared.ids == [ids[k] for k in good]
    assert prepared.positions.tolist() == good
    np.testing.assert_array_equal(prepared.targets, targets[good])
    assert [f["id"] for f in prepared.failures] == [BAD] and BAD in prepared.failures[0]["reason"]
    records = prepared.records()
    for k, record in zip(good, records):
        built = builder(entries[k], ids[k])
        assert record.keys() == built.keys()
        for name, value in built.items():
            assert record[name].dtype == np.dtype(TOY_SCHEMA.fields[name].dtype), name
            np.testing.assert_array_equal(record[name], value)
    assert prepared.sizes.tolist() == [len(r["z"]) for r in records]
    picked = prepared.records([5, 0, 17])
    for record, k in zip(picked, [5, 0, 17]):
        np.testing.assert_array_equal(record["pos"], records[k]["pos"])
    manifest = json.loads((prepared.path / MANIFEST).read_text())
    assert manifest["kind"] == "toy-graph" and manifest["settings"] == {"cutoff": 3.0}
    assert RecordSchema.from_json(manifest["schema"]) == TOY_SCHEMA
    assert sum(s["n_records"] for s in manifest["shards"]) == len(prepared)
    assert len(manifest["shards"]) == -(-N_ENTRIES // 8)


def test_pad_batch_layout():
    _, entries = toy_entries(3, seed=1)
    builder = ToyBuilder()
    records = [builder(e, str(k)) for k, e in enumerate(entries)]
    batch = TOY_SCHEMA.pad_batch(records)
    n_atoms = [len(r["z"]) for r in records]
    n_bonds = [len(r["pairs"]) for r in records]
    atoms = -(-max(n_atoms) // 4) * 4
    bonds = max(-(-max(n_bonds) // 8) * 8, 8)
    assert batch["z"].shape == (3, atoms) and batch["z"].dtype == np.int32
    assert batch["pos"].shape == (3, atoms, 3) and batch["pairs"].shape == (3, bonds, 2)
    assert batch["state"].shape == (3, 2) and batch["state"].dtype == np.float32
    for k, record in enumerate(records):
        assert batch["atom_mask"][k].tolist() == [1.0] * n_atoms[k] + [0.0] * (atoms - n_atoms[k])
        assert batch["bond_mask"][k].sum() == n_bonds[k]
        np.testing.assert_array_equal(batch["z"][k, : n_atoms[k]], record["z"])
        assert not batch["pos"][k, n_atoms[k]:].any()
    spec = TOY_SCHEMA.tensor_spec()
    assert set(spec) == set(batch)
    for name, value in batch.items():
        assert spec[name].is_compatible_with(tf.TensorSpec(value.shape, value.dtype)), name


def test_schema_checks_records_and_round_trips_json():
    assert RecordSchema.from_json(json.loads(json.dumps(TOY_SCHEMA.to_json()))) == TOY_SCHEMA
    record = ToyBuilder()(toy_entries(1)[1][0], "x")
    with pytest.raises(RecordSchemaError, match="x1: field 'pos'"):
        TOY_SCHEMA.check_record({**record, "pos": record["pos"][:, :2]}, "x1")
    with pytest.raises(RecordSchemaError, match="x2: field 'z' holds values"):
        TOY_SCHEMA.check_record({**record, "z": np.full(len(record["z"]), 300)}, "x2")
    with pytest.raises(RecordSchemaError, match="group 'atoms'"):
        TOY_SCHEMA.check_record({**record, "z": np.ones(len(record["z"]) + 1)}, "x3")
    with pytest.raises(RecordSchemaError, match="group 'edges'"):
        RecordSchema({"a": FieldSpec("int32", (), "atoms", "int32")}, masks={"m": "edges"})


def _streamed(dataset, **kwargs) -> list[tuple[dict, np.ndarray]]:
    return [(({k: v.numpy() for k, v in x.items()}), y.numpy()) for x, y in dataset.stream(**kwargs)]


def test_stream_covers_each_index_once_as_pad_batch(prepared):
    by_position = _records_by_position(prepared)
    indices = np.arange(1, len(prepared), 2)[::-1]
    targets = prepared.targets[indices] * 10
    options = {"indices": indices, "targets": targets, "batch_size": 3, "shuffle": True, "seed": 5,
               "bucket_boundaries": [4, 8], "with_positions": True}
    batches = _streamed(prepared, **options)
    positions = np.concatenate([x["position"] for x, _ in batches])
    assert sorted(positions.tolist()) == sorted(prepared.positions[indices].tolist())
    target_of = dict(zip(prepared.positions[indices].tolist(), targets))
    for x, y in batches:
        expected = TOY_SCHEMA.pad_batch([by_position[p] for p in x["position"].tolist()])
        assert set(x) == {*expected, "position"}
        for name, value in expected.items():
            assert x[name].dtype == value.dtype, name
            np.testing.assert_array_equal(x[name], value, err_msg=name)
        np.testing.assert_allclose(y[:, 0], [target_of[p] for p in x["position"].tolist()], rtol=1e-6)
        sizes = [len(by_position[p]["z"]) for p in x["position"].tolist()]
        assert np.searchsorted([4, 8], min(sizes), "right") == np.searchsorted([4, 8], max(sizes), "right")
    assert len(batches) == prepared.batches_per_epoch(indices, 3, bucket_boundaries=[4, 8])
    again = _streamed(prepared, **options)
    assert [x["position"].tolist() for x, _ in again] == [x["position"].tolist() for x, _ in batches]
    two = _streamed(prepared, **options, epochs=2)
    first, second = two[: len(batches)], two[len(batches):]
    assert [x["position"].tolist() for x, _ in first] == [x["position"].tolist() for x, _ in batches]
    assert sorted(np.concatenate([x["position"] for x, _ in second]).tolist()) == sorted(positions.tolist())
    assert [x["position"].tolist() for x, _ in second] != [x["position"].tolist() for x, _ in first]
    resumed = _streamed(prepared, **options, epochs=2, first_epoch=1)
    assert [x["position"].tolist() for x, _ in resumed] == [x["position"].tolist() for x, _ in second]


def test_stream_default_buckets_and_inputs_only(prepared):
    batches = list(prepared.stream(batch_size=4))
    assert all(isinstance(x, dict) and "position" not in x for x in batches)
    assert sum(len(x["z"]) for x in batches) == len(prepared)
    assert len(batches) == prepared.batches_per_epoch(batch_size=4)
    counted = prepared.stream(batch_size=4, epochs=2, known_cardinality=True)
    assert int(counted.cardinality()) == 2 * len(batches) == len(list(counted))


def test_stream_shards_by_file_under_input_context(prepared):
    indices = np.arange(len(prepared))
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(2, pipeline, 2)
        dataset = prepared.stream(indices, batch_size=4, input_context=context, with_positions=True)
        batches = [x for x in dataset]
        assert max(len(x["z"]) for x in batches) <= 2  # the per-replica batch size
        assert len(batches) == prepared.batches_per_epoch(indices, 4, context)
        seen.append(set(np.concatenate([x["position"].numpy() for x in batches]).tolist()))
        shards = set(prepared.record_shards[np.isin(prepared.positions, list(seen[-1]))].tolist())
        assert shards == set(range(len(prepared.shards))[pipeline::2])
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(prepared.positions.tolist())
    assert prepared.steps_per_epoch(indices, 4, 2, 2) == min(
        prepared.batches_per_epoch(indices, 4, tf.distribute.InputContext(2, k, 2)) for k in range(2))


def test_strict_raises_naming_the_id(tmp_path):
    with pytest.raises(AtomSetsError, match=BAD):
        _prepare(tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / MANIFEST).exists()
    _prepare(tmp_path / "lenient")
    with pytest.raises(AtomSetsError, match=BAD):  # a kept shard listing the failure
        _prepare(tmp_path / "lenient", strict=True)


def _file_state(folder: Path) -> dict[str, str]:
    return {p.name: p.read_bytes().hex() for p in sorted(folder.glob("shard-*"))}


def test_killed_run_resumes_to_the_same_dataset(tmp_path):
    whole = tmp_path / "whole"
    expected = _prepare(whole)
    resumed = tmp_path / "resumed"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_prepared import _prepare; "
              "from _prepared_toy import ToyBuilder; from pathlib import Path; "
              "_prepare(Path(sys.argv[2]), builder=ToyBuilder(exit_at='e020'))")
    run = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(resumed)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr[-2000:]
    assert not (resumed / MANIFEST).exists()
    assert sorted(p.name for p in resumed.glob("shard-*.json")) == ["shard-00000.json", "shard-00001.json"]
    assert (resumed / ".lock").exists()  # a stale lock (its holder died), taken over by the rerun
    (resumed / ".tmp-x-shard-00002.tfrecord").write_bytes(b"half a shard")  # as if killed while writing it
    kept = (resumed / "shard-00000.tfrecord").stat().st_mtime_ns
    manifest = _prepare(resumed)
    assert manifest == expected
    assert (resumed / "shard-00000.tfrecord").stat().st_mtime_ns == kept
    assert _file_state(resumed) == _file_state(whole)
    assert json.loads((resumed / MANIFEST).read_text()) == json.loads((whole / MANIFEST).read_text())
    assert not list(resumed.glob(".tmp-*"))


def test_two_workers_write_the_same_bytes(tmp_path):
    one = _prepare(tmp_path / "one")
    two = _prepare(tmp_path / "two", workers=2)
    assert one == two
    assert _file_state(tmp_path / "one") == _file_state(tmp_path / "two")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_and_truncated_shards_are_named(tmp_path):
    folder = tmp_path / "broken"
    _prepare(folder)
    dataset = PreparedDataset.open(folder)
    dataset.verify()
    shard = folder / "shard-00001.tfrecord"
    _flip(shard, shard.stat().st_size // 2)
    with pytest.raises(CorruptShardError, match="shard-00001.tfrecord"):
        dataset.verify()
    with pytest.raises(CorruptShardError, match="shard-00001.tfrecord"):
        dataset.records()
    with pytest.raises(tf.errors.DataLossError) as lost:
        list(dataset.stream(batch_size=4))
    assert "shard-00001.tfrecord" in str(dataset.data_loss_error(lost.value))
    truncated = folder / "shard-00002.tfrecord"
    truncated.write_bytes(truncated.read_bytes()[:-7])
    for read in (lambda: dataset.records(np.arange(20, 30)), lambda: dataset.stream(batch_size=4)):
        with pytest.raises(CorruptShardError, match="shard-00002.tfrecord"):
            read()


def test_incompatible_datasets_are_refused(prepared, tmp_path):
    prepared.check_compatible("toy-graph", {"cutoff": 3.0}, "ab" * 32)
    with pytest.raises(PreparedDatasetError, match="prepared for toy-graph, not cgat-graph") as refused:
        prepared.check_compatible("cgat-graph", {"cutoff": 3.0})
    assert str(prepared.path / MANIFEST) in str(refused.value)
    with pytest.raises(PreparedDatasetError, match="prepared with cutoff 3.0, this model uses 4.0"):
        prepared.check_compatible("toy-graph", {"cutoff": 4.0})
    with pytest.raises(PreparedDatasetError, match="another parent model"):
        prepared.check_compatible("toy-graph", {"cutoff": 3.0}, "cd" * 32)
    folder = tmp_path / "again"
    _prepare(folder)
    with pytest.raises(PreparedDatasetError, match="cutoff") as refused:
        _prepare(folder, builder=ToyBuilder(cutoff=4.0))
    assert str(folder) in str(refused.value)
    with pytest.raises(PreparedDatasetError, match="parent"):
        _prepare(folder, parent={"family": "toy", "sha256": "cd" * 32})
    assert _prepare(folder, builder=ToyBuilder(cutoff=4.0), restart=True)["settings"] == {"cutoff": 4.0}
    assert PreparedDataset.open(folder / MANIFEST).settings == {"cutoff": 4.0}


def test_missing_garbled_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(PreparedDatasetError, match="manifest.json"):
        PreparedDataset.open(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(PreparedDatasetError, match=str(tmp_path / MANIFEST)):
        PreparedDataset.open(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(PreparedDatasetError, match="not the manifest"):
        PreparedDataset.open(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PreparedDatasetError, match="notes.txt"):
        _prepare(foreign, restart=True)
    assert (foreign / "notes.txt").exists()


def test_batch_builder_writes_what_the_builder_writes(tmp_path):
    builder = ToyBuilder()
    calls = []

    def batch_builder(entries, ids):
        calls.append(len(ids))
        out = []
        for entry, entry_id in zip(entries, ids):
            try:
                out.append(builder(entry, entry_id))
            except AtomSetsError as exc:
                out.append(exc)
        return out

    plain = _prepare(tmp_path / "plain")
    batched = _prepare(tmp_path / "batched", batch_builder=batch_builder)
    assert calls == [8] * (N_ENTRIES // 8)
    assert batched == plain
    assert _file_state(tmp_path / "batched") == _file_state(tmp_path / "plain")


def test_records_module_imports_no_tensorflow():
    code = "import sys, atomsets_tf.data.records, _prepared_toy; print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parent)
    assert run.stdout.strip() == "False", run.stderr[-2000:]


def test_shuffled_passes_differ_reproduce_and_survive_a_global_seed_of_zero(prepared):
    tf.random.set_seed(0)  # Keras' set_random_seed(0), the CLI's default: tf.data's shuffle(seed=tensor) fails then

    def orders(first_epoch: int) -> list[list[int]]:
        stream = prepared.stream(batch_size=4, shuffle=True, seed=5, epochs=first_epoch + 2, first_epoch=first_epoch,
                                 with_positions=True)
        per_pass = prepared.batches_per_epoch(batch_size=4)
        flat = [int(p) for batch in stream for p in batch["position"].numpy()]
        return [flat[:len(flat) // 2], flat[len(flat) // 2:]] if per_pass else []

    first, second = orders(0)
    assert sorted(first) == sorted(second) == sorted(prepared.positions.tolist())
    assert first != second  # each pass is shuffled anew
    assert orders(1)[0] == second  # a resumed stream continues the sequence


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_shard_files_that_lead_out_of_the_folder_are_refused_on_open(tmp_path):
    folder = tmp_path / "toy"
    _prepare(folder)
    outside = tmp_path / "x.tfrecord"  # a copy of shard 0 beside the folder: its sha256 and size match
    outside.write_bytes((folder / "shard-00000.tfrecord").read_bytes())
    for name in ("../x.tfrecord", str(outside)):
        _edit_manifest(folder, lambda m, name=name: m["shards"][0].update(file=name))
        with pytest.raises(PreparedDatasetError, match=f"{re.escape(repr(name))}.*a path.*{re.escape(str(folder))}"):
            PreparedDataset.open(folder)
    _edit_manifest(folder, lambda m: m["shards"][0].update(file="shard-00000.tfrecord"))
    PreparedDataset.open(folder).verify()
    (folder / "shard-00000.tfrecord").unlink()
    (folder / "shard-00000.tfrecord").symlink_to(outside)
    with pytest.raises(PreparedDatasetError, match="'shard-00000.tfrecord'.*symlink that leads out"):
        PreparedDataset.open(folder)


def test_a_shard_of_another_byte_count_is_refused_naming_it(tmp_path):
    folder = tmp_path / "toy"
    _prepare(folder)
    _edit_manifest(folder, lambda m: m["shards"][1].update(bytes=m["shards"][1]["bytes"] + 1))
    dataset = PreparedDataset.open(folder)  # the bytes of the shard are those it was written with
    for read in (dataset.verify, dataset.records, lambda: dataset.stream(batch_size=4)):
        with pytest.raises(CorruptShardError, match="shard-00001.tfrecord.* bytes, .*manifest.json records"):
            read()
    _edit_manifest(folder, lambda m: m["shards"][1].pop("bytes"))
    with pytest.raises(PreparedDatasetError, match="garbled"):
        PreparedDataset.open(folder)


def test_changed_contents_under_the_same_ids_are_refused_unless_restarted(tmp_path):
    folder = tmp_path / "toy"
    ids, entries, targets = _data()
    options = {"parent": {"family": "toy", "sha256": "ab" * 32}, "shard_size": 8, "progress": False}
    first = prepare_dataset(ids, entries, targets, folder, ToyBuilder(), **options)
    reordered = [dict(reversed(list(e.items()))) for e in entries]  # key order is not content
    assert prepare_dataset(ids, reordered, targets, folder, ToyBuilder(), **options) == first
    moved = [dict(e) for e in entries]
    moved[3] = {**moved[3], "pos": moved[3]["pos"] + 0.5}
    with pytest.raises(PreparedDatasetError, match=f"{re.escape(str(folder))}.*data_hash differs"):
        prepare_dataset(ids, moved, targets, folder, ToyBuilder(), **options)
    again = prepare_dataset(ids, moved, targets, folder, ToyBuilder(), restart=True, **options)
    assert again["data_hash"] != first["data_hash"]
    record = PreparedDataset.open(folder).records([3])[0]
    np.testing.assert_allclose(record["pos"], moved[3]["pos"].astype(np.float32))


def test_a_dataset_in_which_every_entry_fails_is_an_error(tmp_path):
    ids, entries, targets = _data()
    for entry in entries:
        entry["z"][0] = 0
    with pytest.raises(PreparedDatasetError, match=f"none of the {N_ENTRIES} entries.*the first: e000"):
        prepare_dataset(ids, entries, targets, tmp_path / "none", ToyBuilder(), parent={}, shard_size=8,
                        progress=False)
    assert not (tmp_path / "none" / MANIFEST).exists()


def test_stream_above_decides_whether_a_prepared_table_streams(prepared):
    from atomsets_tf.data.io import Table
    from atomsets_tf.data.streaming import DEFAULT_STREAM_ABOVE, StreamingSets, stream_threshold
    from atomsets_tf.models.base import read_prepared

    table = Table(ids=list(prepared.ids), inputs=list(range(len(prepared))), targets=prepared.targets,
                  kind="prepared", prepared=prepared)
    in_memory = lambda records: ("in memory", len(records))  # noqa: E731
    assert stream_threshold() == DEFAULT_STREAM_ABOVE and stream_threshold(0) == 0
    assert read_prepared(table, in_memory) == ("in memory", len(table))  # the default: small tables in memory
    assert read_prepared(table, in_memory, stream_above=len(table)) == ("in memory", len(table))
    streamed = read_prepared(table, in_memory, stream_above=0)
    assert isinstance(streamed, StreamingSets) and len(streamed) == len(table)
    # Read as two input pipelines: each global batch of 4 joins a batch of 2 of each, as two workers read them.
    batch = next(iter(streamed.stream(None, 4, pipelines=2)))
    assert len(batch["z"]) == 4
    indices = np.asarray(streamed.positions)
    assert streamed.steps_per_epoch(4, pipelines=2) == prepared.steps_per_epoch(indices, 4, 2, 2, drop_remainder=True)
