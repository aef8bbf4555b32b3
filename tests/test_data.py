"""Reading data, compositions, element tables, splits and padded pipelines."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from atomsets_tf.data import io as data_io
from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.data.elements import ElementTable
from atomsets_tf.data.padding import pad_stack, padded_length, size_bucketed_batches
from atomsets_tf.data.pipeline import compositions_to_sets, make_dataset
from atomsets_tf.data.splits import ids_to_indices, official_folds, random_split, split_off_validation
from atomsets_tf.errors import (
    AtomSetsError,
    CompositionParseError,
    DataFormatError,
    EmptyStructureError,
    InvalidTargetError,
    UnknownElementError,
)


def test_composition_to_set_fractions():
    zs, fr = composition_to_set("Fe2O3")
    assert zs.tolist() == [8, 26]
    np.testing.assert_allclose(fr, [0.6, 0.4], rtol=1e-6)
    zs, fr = composition_to_set("Ag(AuS)2")
    assert zs.tolist() == [16, 47, 79]
    np.testing.assert_allclose(fr.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("bad", ["Xx2O", "Fe2O3)(", "12"])
def test_bad_composition_raises(bad):
    with pytest.raises(CompositionParseError, match="cannot parse|not an element"):
        composition_to_set(bad)


def test_empty_composition_raises():
    with pytest.raises(EmptyStructureError):
        composition_to_set("  ")


def test_unknown_element_names_the_entry():
    table = ElementTable(np.ones((10, 3)), np.array([False] + [True] * 9), name="tiny")
    with pytest.raises(UnknownElementError, match=r"element Fe in mb-x-1 \(FeO\) is not in the tiny element table"):
        compositions_to_sets(["HO", "FeO"], ids=["mb-x-0", "mb-x-1"], element_table=table)


def test_embedded_steels_reads_and_has_official_folds():
    table = data_io.read_table(data_io._RESOURCES / "matbench_steels.json.gz")
    assert len(table) == 312 and table.kind == "composition"
    assert table.ids[0] == "mb-steels-001" and table.target_name == "yield strength"
    assert table.task_type() == "regression"
    folds = official_folds("steels")
    assert len(folds) == 5
    test_ids = [i for _, test in folds for i in test]
    assert sorted(test_ids) == sorted(table.ids)  # the test folds partition the task
    for train, test in folds:
        assert not set(train) & set(test)


def test_matbench_layout_classification(shared):
    table = data_io.load("matbench_expt_is_metal")
    assert len(table) == 4921 and table.task_type() == "classification"
    assert set(np.unique(table.targets)) == {0.0, 1.0}


def test_formulas_csv_of_a_structure_task(shared):
    table = data_io.load("matbench_mp_e_form", compositional=True)
    assert table.kind == "composition" and table.ids[0].startswith("mb-mp-e-form-")
    assert len(table) == 132752


def test_csv_and_nan_target(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,formula,gap\na,NaCl,1.5\nb,Fe2O3,\n")
    table = data_io.read_table(p)
    assert table.ids == ["a", "b"] and table.target_name == "gap"
    with pytest.raises(InvalidTargetError, match="target of b is nan"):
        table.require_targets()


def test_csv_without_composition_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,x,y\na,1,2\n")
    with pytest.raises(DataFormatError, match="no composition column"):
        data_io.read_table(p)


def test_corrupt_and_foreign_files(tmp_path):
    gz = tmp_path / "bad.json.gz"
    gz.write_bytes(b"\x1f\x8b\x08not really gzip")
    with pytest.raises(DataFormatError):
        data_io.read_table(gz)
    js = tmp_path / "list.json"
    js.write_text("[1, 2, 3]")
    with pytest.raises(DataFormatError, match="layout"):
        data_io.read_table(js)
    with pytest.raises(DataFormatError, match="'matbench_nonexistent' is not a Matbench task .they are matbench_"):
        data_io.load("matbench_nonexistent")


def test_structure_json_and_cif_folder(tmp_path):
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    p = tmp_path / "s.json.gz"
    with gzip.open(p, "wt") as fh:
        json.dump({"index": ["x-1"], "columns": ["structure", "e"], "data": [[s.as_dict(), 1.0]]}, fh)
    table = data_io.read_table(p)
    assert table.kind == "structure" and table.inputs[0].composition.reduced_formula == "NaCl"
    folder = tmp_path / "cifs"
    folder.mkdir()
    s.to(filename=str(folder / "nacl.cif"))
    s.to(filename=str(folder / "POSCAR"), fmt="poscar")
    table = data_io.read_table(folder)
    assert sorted(table.ids) == ["POSCAR", "nacl"] and table.targets is None


def test_random_split_and_validation_split():
    tr, va, te = random_split(100, seed=3)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    assert not np.array_equal(tr, random_split(100, seed=4)[0])
    t2, v2 = split_off_validation(np.arange(50), 0.1, seed=0)
    assert len(v2) == 5 and not set(t2) & set(v2)
    with pytest.raises(DataFormatError):
        ids_to_indices(["a", "b"], ["c"])


def test_padding_and_buckets():
    assert padded_length(1) == 8 and padded_length(9) == 16
    out = pad_stack([np.ones((2, 3)), np.ones((4, 3))], 5)
    assert out.shape == (2, 5, 3) and out[0, 2:].sum() == 0
    sizes = np.random.default_rng(0).integers(1, 30, size=101)
    batches = size_bucketed_batches(sizes, 8, shuffle=True, seed=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(101))
    unshuffled = size_bucketed_batches(sizes, 8)
    spread = max(np.ptp(sizes[b]) for b in unshuffled)
    assert spread <= 8  # size-sorted batches stay homogeneous


@pytest.mark.parametrize("dense_limit", [0, 32], ids=["bucketed", "dense"])
def test_dataset_yields_padded_batches_with_zero_weights(dense_limit):
    sets = compositions_to_sets(["NaCl", "Fe2O3", "LiFePO4", "H2O", "SiO2"])
    ds = make_dataset(sets, np.arange(5.0), batch_size=2, shuffle=True, dense_limit=dense_limit)
    seen = 0
    for x, y in ds:
        w = x["weights"].numpy()
        assert x["atoms"].shape == w.shape and y.shape[1] == 1
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
        assert (x["atoms"].numpy()[w == 0] == 0).all()
        seen += len(y)
    assert seen == 5


def test_all_errors_are_atomsets_errors():
    for exc in (CompositionParseError, UnknownElementError, InvalidTargetError, DataFormatError):
        assert issubclass(exc, AtomSetsError)


def test_task_name_wins_over_an_output_folder_of_the_same_name(tmp_path, monkeypatch):
    from atomsets_tf.data.io import load

    monkeypatch.chdir(tmp_path)
    (tmp_path / "matbench_steels").mkdir()  # e.g. a benchmark's output folder
    table = load("matbench_steels")
    assert len(table) == 312 and table.meta["task"] == "matbench_steels"
