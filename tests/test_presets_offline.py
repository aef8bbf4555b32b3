"""A preset that is not on disk: the message names the way out, ``models`` shows it, ``models --download`` fetches it."""

from __future__ import annotations

import shutil

import pytest

from atomsets_tf import presets
from atomsets_tf.cli import main
from atomsets_tf.errors import PresetNotAvailableError, UnknownPresetError

LOG10K = "megnet-mp-2018.6.1-log10K"
PARENT = "megnet-mp-2019.4.1-formation_energy"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


def test_a_missing_preset_names_its_urls_the_layout_the_variable_and_the_command(offline):
    with pytest.raises(PresetNotAvailableError) as raised:
        presets.resolve(LOG10K)
    message = str(raised.value)
    assert not isinstance(raised.value, UnknownPresetError)  # the preset is known; its files are not on disk
    for pf in presets.get_preset(LOG10K).files.values():
        assert pf.relpath in message and pf.url in message
    assert presets.MODELS_ENV in message and f"<folder>/{presets.get_preset(LOG10K).files['hdf5'].relpath}" in message
    assert f"atomsets-tf models --download {LOG10K}" in message and "offline: https://" in message
    assert str(presets.bundled_dir()) not in message  # never the installed package's folder as a place for files


def test_the_cli_gives_it_on_one_error_line(offline, capsys):
    assert main(["inspect", LOG10K]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and presets.MODELS_ENV in lines[0] and "--download" in lines[0]


def test_a_v0_source_not_on_disk_suggests_the_embedded_table(offline):
    from atomsets_tf.models.atomsets.element_sources import element_source_table

    with pytest.raises(PresetNotAvailableError, match=f"offline, the package embeds the V0 table of {PARENT}"):
        element_source_table(LOG10K)
    assert element_source_table(PARENT).dim == 16  # the embedded one works offline


def test_models_shows_a_missing_parent(offline, capsys):
    rows = {r["name"]: r for r in presets.list_presets()}
    assert rows["atomsets-v0-steels"]["available"] and rows["atomsets-v0-steels"]["missing"] == []
    assert rows["atomsets-v1-jdft2d"]["missing"] == [PARENT] and not rows["atomsets-v1-jdft2d"]["available"]
    assert presets.requirements("atomsets-v1-jdft2d") == [PARENT]  # read from the model file's config
    assert main(["models"]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"needs {PARENT}" in listing["atomsets-v1-jdft2d"] and "local" not in listing["atomsets-v1-jdft2d"]
    assert "  local  " in listing["atomsets-v0-steels"] and "  download  " in listing[LOG10K]


def test_download_fetches_a_preset_and_the_presets_it_needs(offline, shared, monkeypatch, capsys):
    fetched = []

    def from_shared(pf, dest, progress=False):  # stands in for the network, with the published files
        fetched.append(pf.relpath)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "pretrained" / pf.relpath, dest)
        return dest

    monkeypatch.setattr(presets, "_download", from_shared)
    assert main(["models", "--download", "atomsets-v1-jdft2d", "--quiet"]) == 0
    assert sorted(fetched) == sorted(pf.relpath for pf in presets.get_preset(PARENT).files.values())
    assert "atomsets-v1-jdft2d: on disk" in capsys.readouterr().out
    assert {r["name"]: r for r in presets.list_presets()}["atomsets-v1-jdft2d"]["available"]
    assert main(["models", "--download", "atomsets-v1-jdft2d", "--quiet"]) == 0 and len(fetched) == 2  # not again


def test_download_checks_the_sha256_and_refuses_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "upstream.bin"
    source.write_bytes(b"not the published file")
    bad = presets.PresetFile("test/bad.bin", "0" * 64, source.as_uri())
    presets.register_preset(presets.Preset("test-bad-download", "table", {"json": bad}))
    try:
        assert main(["models", "--download", "test-bad-download", "--quiet"]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "sha256" in lines[0] and "expected " + "0" * 64 in lines[0]
        assert not (tmp_path / "cache" / "test" / "bad.bin").exists()
    finally:
        presets._REGISTRY.pop("test-bad-download", None)
    assert main(["models", "--download", "no-such-preset"]) == 2
    assert "known presets" in error_lines(capsys.readouterr().err)[0]


def test_a_shared_folder_beside_the_cwd_is_not_used_without_the_variable(tmp_path, monkeypatch):
    from atomsets_tf.utils.io import SHARED_ENV, shared_dir

    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "pretrained").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # ../shared beside the current directory
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert shared_dir() is None
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "shared"))
    assert shared_dir() == tmp_path / "shared"
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "work"))  # names no folder with data/ or pretrained/
    assert shared_dir() is None
