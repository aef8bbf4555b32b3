"""AtomSets-V0 from several element-feature sources (``element_features`` / ``--element-features``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from atomsets_tf.cli import main
from atomsets_tf.data.elements import ElementTable
from atomsets_tf.data.io import Table
from atomsets_tf.errors import AtomSetsError, UnknownElementError
from atomsets_tf.models.atomsets import element_sources
from atomsets_tf.models.atomsets.element_sources import element_features_table, element_source_table
from atomsets_tf.training.trainer import TrainingConfig
from atomsets_tf.workflows.fit import fit, fit_model_settings
from tests._tables import learnable_table, write_csv

FORMATION = "megnet-mp-2019.4.1-formation_energy"
TINY = TrainingConfig(epochs=2, batch_size=32)


def test_concatenated_width_and_known_elements(shared):
    sources = ["megnet", FORMATION, "matscholar"]
    parts = [element_source_table(name) for name in sources]
    combined = element_features_table(sources)
    assert combined.dim == sum(p.dim for p in parts)
    # Known only where every source is known: megnet's JSON table lacks some elements matscholar has.
    n = len(combined.known)
    for p in parts:
        covered = np.zeros(n, dtype=bool)
        covered[: len(p.known)] = p.known
        assert not (combined.known & ~covered).any()
    assert combined.known.sum() < parts[2].known.sum()
    # Each block is its source's row: unscaled by default, standardised over the source's known elements on request.
    fe, start, width = 26, parts[0].dim, parts[1].dim
    np.testing.assert_array_equal(combined.table[fe, start:start + width], parts[1].table[fe])
    scaled = element_features_table(sources, standardize=True).table[fe, start:start + width]
    rows = parts[1].table[parts[1].known]
    np.testing.assert_allclose(scaled, (parts[1].table[fe] - rows.mean(0)) / rows.std(0), rtol=1e-4, atol=1e-5)


def test_standardized_and_concatenate_keep_unknown_rows_zero():
    a = ElementTable(np.arange(8.0).reshape(4, 2), np.array([False, True, True, True]), "a")
    b = ElementTable(np.full((3, 1), 7.0), np.array([False, True, False]), "b")
    both = ElementTable.concatenate([a.standardized(), b.standardized()])
    assert both.table.shape == (4, 3) and both.known.tolist() == [False, True, False, False]
    assert not both.table[~both.known].any()
    np.testing.assert_allclose(a.standardized().table[1:].std(0), 1.0, rtol=1e-6)


def test_unknown_element_is_refused_naming_the_entry(shared):
    # Po (84) is in the MEGNet embeddings but not in megnet's JSON table.
    table = Table(["ok-1", "ok-2", "ok-3", "bad-po"], ["Fe2O3", "NaCl", "Cu", "Po2Fe"], np.arange(4.0),
                  "composition", "y", "tiny")
    assert not element_source_table("megnet").known[84] and element_source_table(FORMATION).known[84]
    with pytest.raises(UnknownElementError, match="Po in bad-po"):
        fit(table, "atomsets-v0", training=TINY, progress=False, element_features=[FORMATION, "megnet"])


def test_saved_model_predicts_without_its_sources(shared, tmp_path, monkeypatch):
    from atomsets_tf.models.loading import load_model, predict_table

    checkpoint = tmp_path / "parent" / "formation_energy.hdf5"
    checkpoint.parent.mkdir()
    for suffix in ("", ".json"):
        shutil.copy(shared / "pretrained" / "megnet" / "mp-2019.4.1" / f"formation_energy.hdf5{suffix}",
                    f"{checkpoint}{suffix}")
    table = learnable_table(60)
    result = fit(table, "atomsets-v0", training=TINY, progress=False, out_dir=tmp_path / "run",
                 element_features=[str(checkpoint), "matscholar"])
    assert result.model.count_params() > 0
    before = predict_table(result.model, table)
    shutil.rmtree(checkpoint.parent)

    def gone():
        raise AssertionError("a saved model must not read its sources again")

    monkeypatch.setitem(element_sources.TABLE_SOURCES, "matscholar", gone)
    model = load_model(tmp_path / "run" / "model.keras")
    np.testing.assert_allclose(predict_table(model, table), before, rtol=1e-5, atol=1e-5)


def test_sources_change_the_fingerprint(shared, monkeypatch):
    settings = [fit_model_settings("atomsets-v0", element_features=names)
                for names in (None, ["megnet"], [FORMATION], [FORMATION, "matscholar"], ["matscholar", FORMATION])]
    assert "element_features" not in settings[0]  # runs recorded before keep their fingerprint
    assert settings[3]["element_features"] == {"sources": [FORMATION, "matscholar"],
                                               "standardized": element_sources.STANDARDIZE_SOURCES}
    monkeypatch.setattr(element_sources, "STANDARDIZE_SOURCES", not element_sources.STANDARDIZE_SOURCES)
    settings.append(fit_model_settings("atomsets-v0", element_features=[FORMATION, "matscholar"]))
    assert len({str(s) for s in settings}) == len(settings)


@pytest.mark.parametrize("names, message", [
    (["no-such-source"], "'no-such-source'"),
    (["matscholar", "matscholar"], "given twice"),
    ([], "no source"),
])
def test_bad_source_names_are_refused(names, message):
    with pytest.raises(AtomSetsError, match=message):
        fit(learnable_table(20), "atomsets-v0", training=TINY, progress=False, element_features=names)


def test_element_features_only_for_v0():
    with pytest.raises(AtomSetsError, match="not of atomsets"):
        fit_model_settings("atomsets", element_features=["megnet"])
    with pytest.raises(AtomSetsError, match="not both"):
        fit_model_settings("atomsets-v0", features_from=FORMATION, element_features=["megnet"])


@pytest.mark.parametrize("command", ["fit", "benchmark"])
def test_cli_bad_source_is_one_error_line(tmp_path, capsys, command):
    data = write_csv(learnable_table(20), tmp_path / "tiny.csv")
    args = [command, str(data), "--model", "atomsets-v0", "--element-features", "matscholar",
            "--element-features", "bogus-table", "-o", str(tmp_path / "out")]
    if command == "benchmark":
        args += ["--protocol", "paper"]
    assert main(args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "'bogus-table'" in err[0]
    assert not (tmp_path / "out" / "model.keras").exists()


@pytest.mark.parametrize("command", ["fit", "benchmark"])
def test_cli_passes_the_sources_through(tmp_path, shared, command):
    import json

    data = write_csv(learnable_table(40), tmp_path / "tiny.csv")
    out = tmp_path / "out"
    args = [command, str(data), "--model", "atomsets-v0", "--element-features", "matscholar",
            "--element-features", FORMATION, "--units", "8", "-o", str(out), "--quiet"]
    args += ["--epochs", "2"] if command == "fit" else ["--protocol", "paper", "--folds", "0", "--epochs", "2"]
    assert main(args) == 0
    metrics = json.loads((out / ("metrics.json" if command == "fit" else "fold_0/metrics.json")).read_text())
    assert metrics["fingerprint"]["settings"]["element_features"]["sources"] == ["matscholar", FORMATION]


def test_the_embedded_v0_table_is_the_checkpoints_own(shared):
    """The package's copy (README command 1 runs offline on it) equals the checkpoint's layer, float for float."""
    from atomsets_tf import presets
    from atomsets_tf.data.elements import embedded_embedding_table
    from atomsets_tf.models.megnet.model import load_megnet

    rows, sha = embedded_embedding_table(FORMATION)
    assert sha == presets.get_preset(FORMATION).files["hdf5"].sha256
    np.testing.assert_array_equal(rows, load_megnet(FORMATION).embedding_table())
    np.testing.assert_array_equal(element_source_table(FORMATION).table, rows)
    assert embedded_embedding_table("megnet-mp-2019.4.1-efermi") is None  # only the one preset is embedded


def test_the_default_v0_of_atomsets_v0_is_the_parent_formation_energy_megnets_and_works_offline(offline, tmp_path):
    from atomsets_tf.data.elements import embedded_embedding_table
    from atomsets_tf.workflows.fit import featurize

    assert element_sources.DEFAULT_V0_SOURCES == (FORMATION,)
    table = learnable_table(40)
    _, default_table = featurize(table, "atomsets-v0")
    rows, _ = embedded_embedding_table(FORMATION)
    np.testing.assert_array_equal(default_table.table[1:], rows[1:])  # row 0: no element
    assert default_table.known[1:].all() and not default_table.known[0]
    # A default run records its V0 as if named: the fingerprint of README command 1's explicit source.
    result = fit(table, "atomsets-v0", training=TINY, progress=False, out_dir=tmp_path / "run")
    assert result.metrics["n_train"] > 0
    assert fit_model_settings("atomsets-v0", element_features=[FORMATION]) == fit_model_settings(
        "atomsets-v0", element_features=element_sources.v0_sources("atomsets-v0", None, None))


def test_megnets_16_wide_table_ships_with_the_package(offline, shared):
    """megnet's ``elemental_embedding_1MEGNet_layer.json`` is found offline, equal to megnet's file, float for float."""
    from atomsets_tf import presets
    from atomsets_tf.data.elements import megnet_element_table, megnet_element_table_path

    path = megnet_element_table_path()
    assert path.parent.parent == presets.bundled_dir()  # the package's copy, not the project's ../shared
    shipped = ElementTable.from_json(shared / "pretrained" / "megnet" / "elemental_embedding_1MEGNet_layer.json")
    np.testing.assert_array_equal(megnet_element_table().table, shipped.table)
    np.testing.assert_array_equal(megnet_element_table().known, shipped.known)
