"""Inputs users already have (issue 15): pandas DataFrames, ASE Atoms, pymatgen objects, formula strings and
extxyz files, through ``as_table``, ``data.io.load``, ``fit``, ``predict_table``, ``MEGNet.tap`` and the CLI."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data import io as data_io
from atomsets_tf.data.inputs import IN_MEMORY, as_table
from atomsets_tf.data.io import Table
from atomsets_tf.errors import (
    CompositionParseError,
    DataFormatError,
    InvalidTargetError,
    MissingExtraError,
    RunSettingsError,
)
from atomsets_tf.models.loading import predict_table, predict_with_std, tap_table
from atomsets_tf.workflows.fit import ModelConfig, TrainingConfig, fit
from tests._tables import toy_crystals, write_csv
from tests.test_bad_input import assert_cli_error, nacl
from tests.test_tap_shards import tiny_megnet

TINY = TrainingConfig(epochs=1, patience=1, batch_size=16)
HEAD = ModelConfig(units=8, embedding_dim=8, n_layers_before_readout=1, n_layers_after_readout=1)


def steels(n: int = 48) -> Table:
    """The first ``n`` entries of the embedded matbench_steels (compositions, yield strength)."""
    return data_io.read_table(data_io._RESOURCES / "matbench_steels.json.gz").subset(range(n))


def steels_frame(table: Table) -> pd.DataFrame:
    """``table`` as a DataFrame: an id column, the formulas, the target and a text column that is no target."""
    return pd.DataFrame({"mbid": table.ids, "composition": table.inputs, table.target_name: table.targets,
                         "note": ["from a notebook"] * len(table)})


def atoms_of(structures, ids=None) -> list:
    """ASE Atoms of pymatgen structures, with ``info["id"]`` when ``ids`` are given."""
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    for atoms, entry_id in zip(frames, ids or [None] * len(frames)):
        if entry_id is not None:
            atoms.info["id"] = entry_id
    return frames


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny fit on a DataFrame of compositions (into a run folder) and the same fit on the equivalent CSV."""
    folder = tmp_path_factory.mktemp("inputs")
    table = steels()
    frame = steels_frame(table)
    from_frame = fit(frame, training=TINY, model_config=HEAD, out_dir=folder / "run", progress=False)
    from_csv = fit(write_csv(table, folder / "steels.csv"), training=TINY, model_config=HEAD, progress=False)
    return table, frame, from_frame, from_csv, folder / "run"


@pytest.fixture(scope="module")
def megnet_file(tmp_path_factory):
    """A tiny random MEGNet, loaded and saved as .keras."""
    model = tiny_megnet()
    path = tmp_path_factory.mktemp("megnet") / "tiny.keras"
    model.save(path)
    return model, path


# ----------------------------------------------------------------------------- compositions


def test_fit_on_a_dataframe_equals_the_fit_on_its_csv(fitted):
    table, _, from_frame, from_csv, _ = fitted
    assert from_frame.metrics["data"] == "<DataFrame>" and from_frame.metrics["target"] == table.target_name
    assert from_frame.test_ids == from_csv.test_ids and set(from_frame.test_ids) <= set(table.ids)
    np.testing.assert_array_equal(from_frame.test_predictions, from_csv.test_predictions)


def test_every_kind_of_composition_input_predicts_as_the_table(fitted):
    from pymatgen.core import Composition

    table, frame, from_frame, _, _ = fitted
    model = from_frame.model
    expected = predict_table(model, table)
    kinds = {
        "formulas": list(table.inputs),
        "tuple": tuple(table.inputs),
        "array": np.array(table.inputs),
        "Series": pd.Series(table.inputs, index=table.ids),
        "Compositions": [Composition(c) for c in table.inputs],
        "DataFrame": frame,
        "as_table(DataFrame)": as_table(frame),
    }
    for kind, data in kinds.items():
        np.testing.assert_allclose(predict_table(model, data), expected, rtol=1e-6, err_msg=kind)
    np.testing.assert_allclose(predict_with_std(model, frame)[0], expected, rtol=1e-6)
    assert as_table(frame).ids == table.ids and as_table(kinds["Series"]).ids == table.ids
    np.testing.assert_array_equal(as_table(frame).targets, table.targets)
    single = as_table("Fe0.7Ni0.3")
    assert single.kind == "composition" and single.ids == ["0"] and single.inputs == ["Fe0.7Ni0.3"]


def test_a_run_on_a_dataframe_resumes_on_the_same_data_and_refuses_other_inputs(fitted):
    _, frame, _, _, run = fitted
    other = frame.copy()
    other.loc[0, "composition"] = "Fe0.5Ni0.5"  # same ids and targets: only the fingerprint of the inputs differs
    with pytest.raises(RunSettingsError, match="data"):
        fit(other, training=TINY, model_config=HEAD, out_dir=run, progress=False)
    again = fit(frame.copy(), training=TINY, model_config=HEAD, out_dir=run, progress=False)
    assert again.metrics["fingerprint"] == fitted[2].metrics["fingerprint"]


# ----------------------------------------------------------------------------- structures


def test_structures_dicts_atoms_and_frames_give_identical_megnet_taps(megnet_file):
    model, _ = megnet_file
    crystals = toy_crystals()
    atoms = atoms_of(crystals)
    expected = model.tap(crystals, ["V1", "f"])
    for kind, data in {"Atoms": atoms, "dicts": [s.as_dict() for s in crystals],
                       "DataFrame": pd.DataFrame({"atoms": atoms}), "Table": as_table(crystals)}.items():
        taps = model.tap(data, ["V1", "f"])
        np.testing.assert_allclose(taps["f"], expected["f"], atol=1e-6, err_msg=kind)
        for got, want in zip(taps["V1"], expected["V1"], strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=kind)
    np.testing.assert_allclose(tap_table(model, atoms, ["f"])["f"], expected["f"], atol=1e-6)
    np.testing.assert_allclose(predict_table(model, atoms), model.predict(crystals), atol=1e-6)
    table = as_table(atoms_of(crystals, ids=[f"c-{k}" for k in range(len(crystals))]))
    assert table.kind == "structure" and table.ids == [f"c-{k}" for k in range(len(crystals))]
    assert table.meta[IN_MEMORY] and as_table(crystals[0]).ids == ["0"]


def test_cli_tap_on_an_extxyz_file(tmp_path, megnet_file):
    import ase.io

    model, path = megnet_file
    crystals = toy_crystals()
    ids = [f"x-{k}" for k in range(len(crystals))]
    frames = atoms_of(crystals, ids)
    for k, atoms in enumerate(frames):
        atoms.info["gap"] = 0.5 * k
    data = tmp_path / "crystals.extxyz"
    ase.io.write(data, frames, format="extxyz")
    table = data_io.load(data)
    assert table.ids == ids and table.target_name == "gap"
    np.testing.assert_allclose(table.targets, 0.5 * np.arange(len(crystals)))
    out = tmp_path / "taps.npz"
    assert main(["tap", str(path), str(data), "--layer", "f", "-o", str(out)]) == 0
    with np.load(out) as npz:
        assert list(npz["ids"]) == ids
        np.testing.assert_allclose(npz["f"], model.tap(crystals, ["f"])["f"], atol=1e-5)


# ----------------------------------------------------------------------------- errors


def test_unknown_element_in_a_formula_names_the_entry():
    with pytest.raises(CompositionParseError, match=r"<list>: entry 1: .*'Qq2O'.*Qq"):
        as_table(["Fe2O3", "Qq2O"])
    with pytest.raises(CompositionParseError, match=r"<DataFrame>: entry b: .*Qq"):
        as_table(pd.DataFrame({"id": ["a", "b"], "formula": ["Fe", "Qq"]}))


def test_overlapping_atoms_in_an_atoms_object_name_the_entry():
    frames = atoms_of([nacl(), nacl(shift=1e-9)], ids=["ok-1", "twice-2"])
    with pytest.raises(DataFormatError, match=r"<list>: entry twice-2: sites 1 \(Cl\) and 2 \(Cl\) are 0.000 Å"):
        as_table(frames)


def test_nan_target_in_a_dataframe_is_refused_by_fit():
    frame = pd.DataFrame({"id": ["a", "b", "c"], "formula": ["Fe", "Ni", "Co"], "y": [1.0, np.nan, 2.0]})
    assert np.isnan(as_table(frame).targets[1])  # missing, as an empty CSV cell: fine to predict
    with pytest.raises(InvalidTargetError, match="<DataFrame>: target of b is nan"):
        fit(frame, training=TINY, progress=False)
    with pytest.raises(InvalidTargetError, match="<DataFrame>: entry b: target 'high' is not a number"):
        as_table(frame.assign(y=["1", "high", "2"]))


def test_ambiguous_target_column_names_the_columns():
    frame = pd.DataFrame({"formula": ["Fe", "Ni"], "gap": [1.0, 2.0], "e_form": [0.1, 0.2], "note": ["x", "y"]})
    with pytest.raises(DataFormatError, match=r"<DataFrame>: .*several are numeric \(gap, e_form\)"):
        as_table(frame)
    assert as_table(frame, target_name="e_form").target_name == "e_form"
    np.testing.assert_array_equal(as_table(frame, target_name="e_form").targets, [0.1, 0.2])
    with pytest.raises(DataFormatError, match="no target column 'band_gap'"):
        as_table(frame, target_name="band_gap")


def test_mixed_compositions_and_structures_name_the_entry():
    with pytest.raises(DataFormatError, match=r"<list>: entry 2 is a structure but entry 0 is a composition"):
        as_table(["Fe2O3", "NaCl", nacl()])


def test_duplicate_ids_are_refused():
    with pytest.raises(DataFormatError, match="<list> has duplicate ids: a"):
        as_table(["Fe", "Ni", "Co"], ids=["a", "b", "a"])
    with pytest.raises(DataFormatError, match="<DataFrame> has duplicate ids: dup"):
        as_table(pd.DataFrame({"id": ["dup", "dup"], "formula": ["Fe", "Ni"]}))
    with pytest.raises(DataFormatError, match="<list> has duplicate ids: same"):
        as_table(atoms_of([nacl(), nacl()], ids=["same", "same"]))


def test_corrupt_extxyz_from_the_cli(tmp_path, capsys, megnet_file):
    _, path = megnet_file
    bad = tmp_path / "broken.extxyz"
    bad.write_text('2\nLattice="1 0 0" Properties=species:S:1:pos:R:3\nNa 0 0 0\n')
    with pytest.raises(DataFormatError, match="broken.extxyz"):
        data_io.read_table(bad)
    assert_cli_error(capsys, ["tap", path, bad, "--layer", "f", "-o", tmp_path / "t.npz"], "broken.extxyz")


def test_without_ase_an_extxyz_file_names_the_extra(tmp_path, capsys, monkeypatch):
    import ase.io

    data = tmp_path / "one.extxyz"
    ase.io.write(data, atoms_of([nacl()]), format="extxyz")
    monkeypatch.setitem(sys.modules, "ase", None)  # as if ASE were not installed
    monkeypatch.setitem(sys.modules, "ase.io", None)
    with pytest.raises(MissingExtraError, match=r'one.extxyz needs ASE: pip install "atomsets-tf\[ase\]"'):
        data_io.read_table(data)
    assert_cli_error(capsys, ["fit", data, "-o", tmp_path / "out"], "one.extxyz", 'pip install "atomsets-tf[ase]"')


def test_a_single_cif_file_with_two_blocks_and_a_poscar_file(tmp_path, megnet_file):
    from pymatgen.core import Lattice, Structure

    crystals = toy_crystals()[:2]
    blocks = [s.to(fmt="cif").replace("data_", f"data_block{k}_", 1) for k, s in enumerate(crystals)]
    (tmp_path / "two.cif").write_text("\n".join(blocks))
    table = data_io.load(tmp_path / "two.cif")
    assert table.kind == "structure" and table.ids == ["two-0", "two-1"]
    for read, original in zip(table.inputs, crystals):
        assert read.composition == original.composition and np.allclose(read.lattice.abc, original.lattice.abc)
    Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]]).to(filename=str(tmp_path / "POSCAR"))
    assert data_io.load(tmp_path / "POSCAR").ids == ["POSCAR"]
    model, path = megnet_file
    out = tmp_path / "p.csv"
    assert main(["predict", str(path), str(tmp_path / "two.cif"), "-o", str(out), "--quiet"]) == 0
    assert [ln.split(",")[0] for ln in out.read_text().splitlines()[1:]] == ["two-0", "two-1"]


def test_cli_target_chooses_among_numeric_columns(tmp_path, capsys):
    table = steels(40)
    frame = pd.DataFrame({"id": table.ids, "composition": table.inputs, "strength": table.targets,
                          "half": table.targets / 2})
    frame.to_csv(tmp_path / "two.csv", index=False)
    args = ["fit", str(tmp_path / "two.csv"), "--epochs", "1", "--batch-size", "16", "--units", "8", "--quiet"]
    assert main([*args, "--target", "half", "-o", str(tmp_path / "half")]) == 0
    import json

    metrics = json.loads((tmp_path / "half" / "metrics.json").read_text())
    assert metrics["target"] == "half"
    assert_cli_error(capsys, [*args, "--target", "nothing", "-o", tmp_path / "none"], "nothing")


def test_target_chooses_a_json_column_and_is_refused_where_there_is_none(tmp_path):
    import json as json_module

    (tmp_path / "t.json").write_text(json_module.dumps({"composition": ["Fe", "Ni"], "a": [1, 2], "b": [3, 4]}))
    assert data_io.load(tmp_path / "t.json").target_name == "a"
    chosen = data_io.load(tmp_path / "t.json", target="b")
    assert chosen.target_name == "b" and chosen.targets.tolist() == [3.0, 4.0]
    with pytest.raises(DataFormatError, match="no target column 'nope'"):
        data_io.load(tmp_path / "t.json", target="nope")
    (tmp_path / "cifs").mkdir()
    toy_crystals()[0].to(filename=str(tmp_path / "cifs" / "one.cif"))
    with pytest.raises(DataFormatError, match="holds no targets"):
        data_io.load(tmp_path / "cifs", target="energy")
    with pytest.raises(DataFormatError, match="as_table"):
        data_io.load(pd.DataFrame({"formula": ["Fe"]}))


def test_an_ase_file_with_several_numeric_values_asks_for_target(tmp_path):
    import ase.io

    frames = atoms_of(toy_crystals()[:2], ids=["p", "q"])
    for k, atoms in enumerate(frames):
        atoms.info.update(energy=-1.0 - k, free_energy=-1.1 - k)
    ase.io.write(tmp_path / "two.extxyz", frames, format="extxyz")
    table = data_io.load(tmp_path / "two.extxyz")
    with pytest.raises(DataFormatError, match=r"several possible targets \(energy, free_energy\).*--target"):
        table.require_targets()
    assert data_io.load(tmp_path / "two.extxyz", target="energy").targets.tolist() == [-1.0, -2.0]
