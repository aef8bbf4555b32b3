"""Bad input that used to escape as a traceback or a silent wrong result (issue 11, part 2).

Every case ends, from the CLI, with exactly one ``Error:`` line and exit code 2, and from the
API with an :class:`~atomsets_tf.errors.AtomSetsError` whose message names the file and the entry.
"""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile

import pytest

from atomsets_tf.cli import main
from atomsets_tf.data import io as data_io
from atomsets_tf.data.composition import composition_to_set
from atomsets_tf.errors import (
    CheckpointError,
    CompositionParseError,
    DataFormatError,
    InvalidTargetError,
    OutputPathError,
    StrategyError,
)
from atomsets_tf.training.strategy import read_tf_config
from tests.test_cli import error_lines


def assert_cli_error(capsys, args: list[str], *fragments: str) -> str:
    """Run the CLI in-process: exit code 2, one ``Error:`` line holding every fragment, no traceback."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def nacl(shift: float = 0.0):
    """Rock-salt-like NaCl in a 4 Å cubic cell; with ``shift`` > 0, a second Cl ``shift`` Å from the first."""
    from pymatgen.core import Lattice, Structure

    species, coords = ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    if shift:
        species.append("Cl")
        coords.append([0.5, 0.5, 0.5 + shift / 4.0])
    return Structure(Lattice.cubic(4.0), species, coords)


def write_structures(path, structures: dict) -> None:
    """A matbench-layout JSON of ``{id: structure}`` with a dummy target."""
    path.write_text(json.dumps({"index": list(structures), "columns": ["structure", "y"],
                                "data": [[s.as_dict(), 1.0] for s in structures.values()]}))


# ----------------------------------------------------------------------------- data files


def test_corrupt_gzip_body(tmp_path, capsys):
    good = gzip.compress(json.dumps({"index": ["a"], "columns": ["composition", "y"],
                                     "data": [["Fe", 1.0]]}).encode() * 50)
    path = tmp_path / "corrupt.json.gz"
    path.write_bytes(good[:10] + bytes(b ^ 0x55 for b in good[10:60]) + good[60:])  # header intact, body not
    with pytest.raises(DataFormatError, match="corrupt.json.gz"):
        data_io.read_table(path)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "corrupt.json.gz")


@pytest.mark.parametrize("bad_row, what", [(5, "not a list"), (["Ni"], "has 1 values, expected 2"),
                                           ([], "has 0 values")])
def test_matbench_row_not_a_list_or_too_short(tmp_path, capsys, bad_row, what):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"index": ["mb-1", "mb-2"], "columns": ["composition", "y"],
                                "data": [["Fe", 1.0], bad_row]}))
    with pytest.raises(DataFormatError, match=f"rows.json: entry mb-2: row .*{what}"):
        data_io.read_table(path)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "rows.json", "mb-2", what)


def test_duplicate_ids_are_named(tmp_path, capsys):
    path = tmp_path / "dups.csv"
    path.write_text("id,composition,y\ndup-x,Fe,1\nok-1,Ni,2\ndup-y,Co,3\ndup-x,Cu,4\ndup-y,Al,5\n")
    with pytest.raises(DataFormatError, match="dups.csv has duplicate ids: dup-x, dup-y"):
        data_io.read_table(path)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "dups.csv", "dup-x, dup-y")


def test_text_target_names_the_entry(tmp_path, capsys):
    path = tmp_path / "text.csv"
    path.write_text("id,composition,y\nok-1,Fe,1\nbad-7,Ni,high\n")
    with pytest.raises(InvalidTargetError, match="text.csv: entry bad-7: target 'high' is not a number"):
        data_io.read_table(path)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "text.csv", "bad-7", "'high'")


# ----------------------------------------------------------------------------- physically invalid inputs


def test_overlapping_atoms_in_a_structure_json(tmp_path, capsys):
    path = tmp_path / "overlap.json"
    write_structures(path, {"ok-1": nacl(), "twice-2": nacl(shift=1e-9)})
    with pytest.raises(DataFormatError, match=r"overlap.json: entry twice-2: sites 1 \(Cl\) and 2 \(Cl\) are "
                                              r"0.000 Å apart") as e:
        data_io.read_table(path)
    assert str(data_io.MIN_SITE_DISTANCE) in str(e.value)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "overlap.json", "twice-2", "sites 1 (Cl) and 2")


def test_minimum_site_distance_is_the_named_constant(tmp_path):
    limit = data_io.MIN_SITE_DISTANCE
    close, far = tmp_path / "close.json", tmp_path / "far.json"
    write_structures(close, {"close-1": nacl(shift=0.9 * limit)})
    write_structures(far, {"far-1": nacl(shift=1.1 * limit)})
    with pytest.raises(DataFormatError, match=f"close-1: sites 1 \\(Cl\\) and 2 \\(Cl\\) are {0.9 * limit:.3f} Å"):
        data_io.read_table(close)
    assert len(data_io.read_table(far)) == 1


def test_site_too_close_to_its_own_periodic_image(tmp_path):
    from pymatgen.core import Lattice, Structure

    path = tmp_path / "tiny_cell.json"
    write_structures(path, {"tiny-1": Structure(Lattice.cubic(0.8 * data_io.MIN_SITE_DISTANCE), ["Na"], [[0, 0, 0]])})
    with pytest.raises(DataFormatError, match="tiny_cell.json: entry tiny-1: site 0 \\(Na\\) is .* periodic image"):
        data_io.read_table(path)


def test_overlapping_atoms_in_a_poscar_folder(tmp_path):
    folder = tmp_path / "poscars"
    folder.mkdir()
    nacl().to(filename=str(folder / "good.vasp"), fmt="poscar")
    nacl(shift=1e-9).to(filename=str(folder / "twice.vasp"), fmt="poscar")
    with pytest.raises(DataFormatError, match="poscars/twice.vasp: entry twice: sites"):
        data_io.read_table(folder)


@pytest.mark.parametrize("formula, what", [("H1e400", "non-finite amount of H"),
                                           ("Fe-1O", "non-positive amount of Fe"),
                                           ("Fe0O", "non-positive amount of Fe")])
def test_composition_with_a_bad_amount(tmp_path, capsys, formula, what):
    with pytest.raises(CompositionParseError, match=what):
        composition_to_set(formula)
    path = tmp_path / "amounts.csv"
    path.write_text(f"id,composition,y\nok-1,NaCl,1\nbad-2,{formula},2\n")
    with pytest.raises(CompositionParseError, match=f"amounts.csv: entry bad-2: composition {formula} has a {what}"):
        data_io.read_table(path)
    assert_cli_error(capsys, ["fit", path, "-o", tmp_path / "out"], "amounts.csv", "bad-2", what)


# ----------------------------------------------------------------------------- TF_CONFIG


WORKERS = {"worker": ["localhost:12345", "localhost:23456"]}


@pytest.mark.parametrize(
    "tf_config, what",
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ('["worker"]', "must be a JSON object"),
        (json.dumps({"cluster": ["localhost:1"], "task": {"type": "worker", "index": 0}}), "'cluster' must be"),
        (json.dumps({"cluster": {"worker": "localhost:1"}}), "non-empty list of 'host:port'"),
        (json.dumps({"cluster": {"worker": ["localhost"]}}), "not a 'host:port' address"),
        (json.dumps({"cluster": {"boss": ["localhost:1"]}}), "task type 'boss'"),
        (json.dumps({"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}), "one 'chief'"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": "zero"}}), "task.index"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": True}}), "task.index"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 2}}), "out of range"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "chief", "index": 0}}), "not in the cluster"),
        (json.dumps({"cluster": WORKERS, "task": ["worker", 0]}), "'task' must be an object"),
        (json.dumps({"cluster": WORKERS}), "no 'task'"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "no 'cluster'"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 0}, "rpc_layer": 5}), "rpc_layer"),
    ],
)
def test_malformed_tf_config(tf_config, what):
    with pytest.raises(StrategyError, match="TF_CONFIG") as e:
        read_tf_config({"TF_CONFIG": tf_config})
    assert what in str(e.value)


@pytest.mark.parametrize("tf_config", [
    None,
    "{}",
    json.dumps({"cluster": {"worker": ["localhost:1"]}}),
    json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 1}}),
    json.dumps({"cluster": {"chief": ["[::1]:2"], **WORKERS}, "task": {"type": "chief", "index": 0}}),
    json.dumps({"cluster": WORKERS, "task": {"type": "evaluator", "index": 0}, "rpc_layer": "grpc"}),
])
def test_valid_tf_config_passes(tf_config):
    env = {} if tf_config is None else {"TF_CONFIG": tf_config}
    assert read_tf_config(env) == (None if tf_config is None else json.loads(tf_config))


@pytest.mark.parametrize("tf_config, what", [
    ("not json at all", "not valid JSON"),
    (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": "zero"}}), "task.index"),
])
def test_malformed_tf_config_from_the_cli(tmp_path, capsys, monkeypatch, tf_config, what):
    data = tmp_path / "ok.csv"
    data.write_text("id,composition,y\na,NaCl,1\nb,KCl,2\n")
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert_cli_error(capsys, ["fit", data, "--strategy", "multi-worker", "-o", tmp_path / "out"], "TF_CONFIG", what)


# ----------------------------------------------------------------------------- model files


def test_convert_output_must_end_in_keras(tmp_path, capsys):
    missing_ckpt = tmp_path / "nothing_here.ckpt"  # the suffix is checked before the checkpoint is read
    from atomsets_tf.models.cgat.convert import convert_checkpoint

    with pytest.raises(OutputPathError, match="must end in .keras.*x.txt"):
        convert_checkpoint(missing_ckpt, tmp_path / "x.txt")
    assert_cli_error(capsys, ["convert", missing_ckpt, "-o", tmp_path / "x.txt"], "must end in .keras", "x.txt")
    assert not (tmp_path / "x.txt").exists()


def _rewrite_keras(source, target, replace: dict) -> None:
    """A copy of the ``.keras`` zip ``source`` with some members' bytes replaced."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))


@pytest.fixture(scope="module")
def cgat_files(tmp_path_factory):
    """Two tiny saved CGAT models of different widths, and a saved Keras model with a Lambda layer."""
    keras = pytest.importorskip("keras")
    from atomsets_tf.models.cgat.model import CGAT

    folder = tmp_path_factory.mktemp("cgat_files")
    for width in (8, 16):
        CGAT(elem_fea_len=width, n_graph=1, msg_heads=1, out_hidden=(8,)).save(folder / f"cgat{width}.keras")
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(folder / "lambda.keras")
    return folder


@pytest.mark.parametrize("as_cgat", ["class_name", "class_module_and_registered_name"])
def test_keras_file_claiming_cgat_but_holding_a_lambda_model(tmp_path, capsys, cgat_files, as_cgat):
    from atomsets_tf.models.loading import load_model

    config = json.loads(zipfile.ZipFile(cgat_files / "lambda.keras").read("config.json"))
    config["class_name"] = "CGAT"
    if as_cgat != "class_name":
        config.update(module="atomsets_tf.models.cgat.model", registered_name="atomsets_tf>CGAT")
    fake = tmp_path / "fake_cgat.keras"
    _rewrite_keras(cgat_files / "lambda.keras", fake, {"config.json": json.dumps(config)})
    with pytest.raises(CheckpointError, match="fake_cgat.keras"):
        load_model(fake)
    assert_cli_error(capsys, ["inspect", fake], "fake_cgat.keras")


@pytest.mark.parametrize("damage", ["truncated", "other_shapes"])
def test_cgat_keras_with_broken_weights_names_the_file(tmp_path, capsys, cgat_files, damage):
    from atomsets_tf.models.loading import load_model

    good = cgat_files / "cgat8.keras"
    weights = zipfile.ZipFile(good).read("model.weights.h5")
    if damage == "truncated":
        weights = weights[: len(weights) // 2]
    else:
        weights = zipfile.ZipFile(cgat_files / "cgat16.keras").read("model.weights.h5")
    broken = tmp_path / "broken_cgat.keras"
    _rewrite_keras(good, broken, {"model.weights.h5": weights})
    with pytest.raises(CheckpointError, match="broken_cgat.keras"):
        load_model(broken)
    assert_cli_error(capsys, ["inspect", broken], "broken_cgat.keras")


def _nn_strategy(cutoff) -> dict:
    return {"@module": "megnet.data.local_env", "@class": "MinimumDistanceNNAll", "cutoff": cutoff}


#: Changes to a published megnet ``.hdf5.json`` that used to raise ValueError/TypeError/OverflowError
#: or load a model that predicts a constant (std 0).
MEGNET_JSON_MUTATIONS = {
    "nn_cutoff_text": (lambda d: d["graph_converter"].__setitem__("nn_strategy", _nn_strategy("five")),
                       "nn_strategy.cutoff must be a finite number"),
    "nn_cutoff_list": (lambda d: d["graph_converter"].__setitem__("nn_strategy", _nn_strategy([5.0])),
                       "nn_strategy.cutoff must be a finite number"),
    "cutoff_huge_int": (lambda d: d["graph_converter"].__setitem__("cutoff", 10**400),
                        "graph_converter.cutoff must be a finite number"),
    "width_huge_int": (lambda d: d["graph_converter"]["bond_converter"].__setitem__("width", 10**400),
                       "Gaussian width must be a finite number"),
    "scaler_std_zero": (lambda d: d["target_scaler"].__setitem__("std", 0), "target_scaler.std must be positive"),
}


def _published_efermi_json(shared) -> dict:
    return json.loads((shared / "pretrained" / "megnet" / "mp-2019.4.1" / "efermi.hdf5.json").read_text())


@pytest.mark.parametrize("mutation", list(MEGNET_JSON_MUTATIONS))
def test_megnet_json_with_non_numeric_fields(tmp_path, shared, mutation):
    from atomsets_tf.models.megnet.checkpoint import parse_converter_json

    mutate, what = MEGNET_JSON_MUTATIONS[mutation]
    data = _published_efermi_json(shared)
    mutate(data)
    with pytest.raises(CheckpointError, match=what) as e:
        parse_converter_json(json.loads(json.dumps(data)), tmp_path / "m.hdf5.json")
    assert "m.hdf5.json" in str(e.value)


def test_megnet_json_with_a_text_cutoff_from_the_cli(tmp_path, shared, capsys):
    source = shared / "pretrained" / "megnet" / "mp-2019.4.1" / "efermi.hdf5"
    shutil.copy(source, tmp_path / "m.hdf5")
    data = _published_efermi_json(shared)
    data["graph_converter"]["nn_strategy"] = _nn_strategy("five")
    (tmp_path / "m.hdf5.json").write_text(json.dumps(data))
    assert_cli_error(capsys, ["inspect", tmp_path / "m.hdf5"], "m.hdf5.json", "nn_strategy.cutoff")
