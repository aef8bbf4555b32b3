"""The checkpoints in pretrained/: registered by name, model cards, loadable and predicting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atomsets_tf import presets
from atomsets_tf.errors import UnknownPresetError

REGISTRY = json.loads((presets.bundled_dir() / presets.BUNDLED_REGISTRY).read_text())["presets"]
NAMES = [e["name"] for e in REGISTRY]


def test_the_issue_presets_are_bundled():
    assert {"atomsets-v0-expt_gap", "atomsets-v0-glass", "atomsets-v1-jdft2d", "cgat-perovskites"} <= set(NAMES)


@pytest.mark.parametrize("entry", REGISTRY, ids=NAMES)
def test_every_bundled_preset_has_its_file_card_and_metrics(entry):
    folder = presets.bundled_dir() / entry["name"]
    assert presets.sha256_file(folder / "model.keras") == entry["sha256"]
    card = (folder / "README.md").read_text()
    for needed in ("## Retrain", "atomsets-tf benchmark", "## Versions", "tensorflow", "Protocol"):
        assert needed in card, needed
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["benchmark"]["mean"] == pytest.approx(entry["test_mean"])
    assert presets.get_preset(entry["name"]).kind == entry["kind"]
    assert presets.is_available(entry["name"])


def test_total_size_stays_small():
    total = sum(p.stat().st_size for p in presets.bundled_dir().rglob("*") if p.is_file())
    assert total < 8 * 2**20, f"pretrained/ holds {total / 2**20:.1f} MB"


def test_from_preset_predicts_like_the_benchmark_fold():
    from atomsets_tf.data.io import load
    from atomsets_tf.models.atomsets import AtomSets
    from atomsets_tf.models.loading import predict_table

    model = AtomSets.from_preset("atomsets-v0-steels")
    table = load("matbench_steels")
    metrics = json.loads((presets.bundled_dir() / "atomsets-v0-steels" / "metrics.json").read_text())["fold_0"]
    from atomsets_tf.data.splits import official_folds

    test_ids = official_folds("matbench_steels")[0][1]
    test = table.subset([table.ids.index(i) for i in test_ids])
    mae = float(np.mean(np.abs(predict_table(model, test) - test.targets)))
    assert mae == pytest.approx(metrics["test_mae"], rel=1e-5)


def test_a_preset_of_another_kind_is_refused():
    from atomsets_tf.models.cgat.model import CGAT

    with pytest.raises(UnknownPresetError, match="is of kind .atomsets., not .cgat."):
        CGAT.from_preset("atomsets-v0-steels")


def test_predict_by_name_on_the_command_line(tmp_path, capsys):
    from atomsets_tf.cli import main

    out = tmp_path / "pred.csv"
    assert main(["predict", "atomsets-v0-steels", "matbench_steels", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 313


LITERATURE = json.loads((presets.bundled_dir() / "literature.json").read_text())
#: Band-gap presets whose task has a table of measured gaps (the mp_gap preset predicts PBE gaps: its card has none).
GAP_PRESETS = [e["name"] for e in REGISTRY if e.get("task") == "matbench_expt_gap"]


def _gaps(name: str) -> tuple[list[dict], dict]:
    """The well-known materials of a band-gap preset's task, and the preset's gap for each (by name)."""
    from atomsets_tf.data.io import Table
    from atomsets_tf.models.loading import load_model, predict_table

    entry = next(e for e in REGISTRY if e["name"] == name)
    materials = LITERATURE["materials"][entry["task"]]
    table = Table(ids=[m["name"] for m in materials], inputs=[m["formula"] for m in materials], targets=None,
                  kind="composition")
    return materials, dict(zip(table.ids, predict_table(load_model(name), table)))


@pytest.mark.parametrize("name", GAP_PRESETS)
def test_band_gap_presets_give_no_negative_gap(name):
    _, gaps = _gaps(name)
    assert min(gaps.values()) >= 0.0, gaps


#: Measured (BENCHMARKS.md, accuracy section): the expt_gap preset still calls some wide-gap oxides metals;
#: matbench_expt_gap lists 599 of its 1,090 oxygen-containing entries and 168 of its 224 Al-containing ones at
#: 0 eV. strict: this test fails the day the preset no longer does, so that the mark is removed.
CALLS_INSULATORS_METALS = {"atomsets-v0-expt_gap"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    n in CALLS_INSULATORS_METALS, reason="calls some wide-gap oxides metals (see its model card)", strict=True))
    for n in GAP_PRESETS])
def test_band_gap_presets_call_no_well_known_insulator_a_metal(name):
    """The model card's well-known materials: no insulator or semiconductor below 0.5 eV (polymorph-ambiguous
    compositions, such as C for diamond and graphite, are shown on the card but not held to it)."""
    materials, gaps = _gaps(name)
    called_metals = {m["name"]: round(float(gaps[m["name"]]), 3) for m in materials
                     if m["class"] != "metal" and "ambiguous" not in m and gaps[m["name"]] < 0.5}
    assert not called_metals, f"{name} calls these insulators and semiconductors metals: {called_metals}"


def test_every_literature_material_names_a_source():
    for task, materials in LITERATURE["materials"].items():
        for m in materials:
            assert m["source"] in LITERATURE["sources"], (task, m["name"])
