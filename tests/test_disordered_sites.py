"""Partly occupied sites: ``Fe 0.5`` and ``Ni 0.5`` at one position are one disordered site, not an overlap.

Compositional models take them (the composition is well defined); a model that needs one element per site (MEGNet's
and CGAT's graphs, and the AtomSets models that tap them) refuses them with a message that names the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from atomsets_tf.data.inputs import as_table
from atomsets_tf.data.io import load
from atomsets_tf.data.structures import merge_shared_positions
from atomsets_tf.errors import DataFormatError, DisorderedSiteError
from atomsets_tf.models.loading import load_model, predict_table
from tests.test_bad_input import assert_cli_error

A = 3.56  # fcc Fe-Ni (Invar), Å
FCC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
CIF = f"""data_FeNi
_cell_length_a {A}
_cell_length_b {A}
_cell_length_c {A}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
_symmetry_Int_Tables_number 1
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
""" + "".join(f"{el}{k} {el} {x} {y} {z} 0.5\n" for k, (x, y, z) in enumerate(FCC) for el in ("Fe", "Ni"))


@pytest.fixture
def feni_cif(tmp_path):
    path = tmp_path / "feni.cif"
    path.write_text(CIF)
    return path


def _split_sites(species: list) -> Structure:
    """fcc, each position listed once per species (as a JSON file from another tool may hold it)."""
    coords = [xyz for xyz in FCC for _ in species]
    return Structure(Lattice.cubic(A), [sp for _ in FCC for sp in species], coords)


def _matbench_json(path, structure: Structure):
    path.write_text(json.dumps({"index": ["feni"], "columns": ["structure", "e"],
                                "data": [[structure.as_dict(), 1.0]]}))
    return path


def test_a_cif_with_two_species_on_one_site_is_one_disordered_site(feni_cif):
    (structure,) = load(feni_cif).inputs
    assert len(structure) == 4 and not structure.is_ordered
    assert structure[0].species.as_dict() == {"Fe": 0.5, "Ni": 0.5}


def test_partial_species_listed_at_one_position_are_merged_not_an_overlap(tmp_path):
    split = _split_sites([{"Fe": 0.5}, {"Ni": 0.5}])
    assert len(split) == 8
    for table in (load(_matbench_json(tmp_path / "split.json", split)), as_table([split])):
        (structure,) = table.inputs
        assert len(structure) == 4
        assert all(site.species.as_dict() == {"Fe": 0.5, "Ni": 0.5} for site in structure)
        np.testing.assert_allclose(structure.frac_coords, FCC)
    ordered = Structure(Lattice.cubic(A), ["Fe"] * 4, FCC)
    assert merge_shared_positions(ordered) is ordered


@pytest.mark.parametrize("species", [["Fe", "Ni"], [{"Fe": 0.7}, {"Ni": 0.5}]], ids=["full", "over-occupied"])
def test_more_than_one_atom_at_one_position_is_still_an_overlap(tmp_path, species):
    with pytest.raises(DataFormatError, match="entry feni: sites 0 .* 0.000 Å apart"):
        load(_matbench_json(tmp_path / "x.json", _split_sites(species)))


def test_a_compositional_model_predicts_a_disordered_site(feni_cif, tmp_path, capsys):
    model = load_model("atomsets-v0-steels")
    (value,) = predict_table(model, load(feni_cif))
    assert value == pytest.approx(predict_table(model, as_table(["Fe0.5Ni0.5"]))[0], rel=1e-6)
    from atomsets_tf.cli import main

    assert main(["predict", "atomsets-v0-steels", str(feni_cif), "-o", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("model", ["cgat-perovskites", "megnet-mp-2019.4.1-formation_energy"])
def test_a_model_that_needs_ordered_sites_refuses_naming_itself(feni_cif, tmp_path, capsys, shared, model):
    assert_cli_error(capsys, ["predict", model, feni_cif, "-o", tmp_path / "p.csv"],
                     f"{model} needs ordered sites", "site 0 is disordered (Fe0.5 Ni0.5)")
    with pytest.raises(DisorderedSiteError, match=f"{model} needs ordered sites"):
        predict_table(load_model(model), load(feni_cif))
