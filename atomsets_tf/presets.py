"""Named pretrained models ("presets"): where their files are, and how to get them.

A preset is a name (e.g. ``megnet-mp-2019.4.1-formation_energy``) for a set of
files, each with a path relative to a models folder, a sha256 and a download URL.
:func:`resolve` looks for the files, in order, in:

1. ``$ATOMSETS_TF_MODELS`` (a folder you manage yourself);
2. the checkpoints this project trained, shipped with the package (the
   repository's ``pretrained/`` folder, installed as ``atomsets_tf.pretrained``;
   listed in its ``presets.json``, each with a model card), which also holds megnet's
   16-wide elemental embedding (``megnet/elemental_embedding_1MEGNet_layer.json``, BSD-3);
3. the cache folder, ``$ATOMSETS_TF_CACHE`` or ``~/.cache/atomsets_tf``;
4. the project's ``shared/pretrained`` folder (development and CI; see
   :func:`atomsets_tf.utils.io.shared_dir`);
5. a download from the model's public source (megnet's GitHub repository for the
   MEGNet presets) into the cache folder, when online and allowed.

Every folder uses the same layout, e.g. ``<folder>/megnet/mp-2019.4.1/formation_energy.hdf5``.
A file is used only when its sha256 matches the registry's, so a partial or
different file is never taken for the preset (downloads are written atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from atomsets_tf.errors import PresetNotAvailableError, UnknownPresetError
from atomsets_tf.utils.io import atomic_path, sha256_file, shared_dir
from atomsets_tf.utils.progress import progress_bar

MODELS_ENV = "ATOMSETS_TF_MODELS"
CACHE_ENV = "ATOMSETS_TF_CACHE"
DOWNLOAD_TIMEOUT_S = 60

_MEGNET_URL = "https://github.com/materialsvirtuallab/megnet/raw/master/mvl_models"


@dataclass(frozen=True)
class PresetFile:
    """One file of a preset: path relative to a models folder, sha256, download URL."""

    relpath: str
    sha256: str
    url: str | None = None


@dataclass(frozen=True)
class Preset:
    """A named pretrained model: its kind (``"megnet"``...), files by role, and a description."""

    name: str
    kind: str
    files: dict[str, PresetFile]
    description: str = ""
    metadata: dict = field(default_factory=dict)


_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset) -> None:
    """Add (or replace) a preset in the registry."""
    _REGISTRY[preset.name] = preset


# sha256 of the published megnet models (BSD-3, Materials Virtual Lab).
_MEGNET_FILES = {
    "mp-2019.4.1/formation_energy": (
        "51de7e372f9fdbd10a519c3fd3cbf6fcd1039cc58e092c85b0f4fef49964f57b",
        "8727d8d0ab2686c4ac1c06f9ed8bdba7e63abaeac1287cff2e3c7263bf0b4b5b",
        "formation energy (eV/atom), MP 2019.4.1, 5 Å: the AtomSets paper's parent model",
    ),
    "mp-2019.4.1/efermi": (
        "20c541f24acdc2de003a56fc6124c1725aa48358c5a3b1be64f358c0cc4c055a",
        "e19ab63af7963c69165774bfac18db52af446e4acd8ba90aa13e17ffb869362d",
        "Fermi energy (eV), MP 2019.4.1, 5 Å",
    ),
    "mp-2019.4.1/log10K": (
        "ac521bb2f6752e1a7c99df86059114b9b7920223f1db957c11749f34e8f9af4a",
        "b91c548a472a92a20e465e3821537222ed35b70868948e9bc5d43aa52ad5029f",
        "log10 bulk modulus (log10 GPa), MP 2019.4.1, 4 Å",
    ),
    "mp-2019.4.1/log10G": (
        "2be27b3fbf59012bed6e6e595c772cf9b67db279cde1686c44987cd132c1b805",
        "bd847ef5124d8d0df856883a3fff045154d355cd875a1c3da7a4851d26be16f8",
        "log10 shear modulus (log10 GPa), MP 2019.4.1, 4 Å",
    ),
    "mp-2018.6.1/formation_energy": (
        "82363f6ef74747f67bccd75fa0237dfaab5f0da519bf5f9cf8f4bcc11c53712b",
        "46566670b0c5ab13ebe6497ea3383fe772e90fe62517282448387694896cabd0",
        "formation energy (eV/atom), MP 2018.6.1, 4 Å",
    ),
    "mp-2018.6.1/band_gap_regression": (
        "e149197440863b06e819c3cc11550f7c78eee329b916112dab84d884d21306de",
        "96285e10309b8bc4091ec5c45b784958b3626e3b0d70ace96493717341438be9",
        "band gap of non-metals (eV), MP 2018.6.1, 4 Å",
    ),
    "mp-2018.6.1/band_classification": (
        "51ce69de769f5f8164bfe316d027b18d9b04cec7c06f88d451956aa3319ed9e0",
        "e7532faf49026e7384c906c389b5e0f8ef9bf586504ef0ff65e3b42897b96190",
        "metal / non-metal classifier (probability of a band gap > 0), MP 2018.6.1, 4 Å",
    ),
    "mp-2018.6.1/log10K": (
        "283e249977d9ac718c92a28590f35bf6ba53f49642469b98e11627a03e24dd05",
        "96415cd0a10c00f174fd8b7560d0df1588f877e9df619f74a0aa702624dd32f4",
        "log10 bulk modulus (log10 GPa), MP 2018.6.1, 4 Å",
    ),
    "mp-2018.6.1/log10G": (
        "f62c31daa7a8d984c7f094ea7e70e4940c14417e4368d7297b567a907430dea2",
        "c4eda11354f7d240d2a75a8a6aafa67005cc2c6a96351b7330095495a6bbaa79",
        "log10 shear modulus (log10 GPa), MP 2018.6.1, 4 Å",
    ),
}

for _stem, (_h5, _js, _desc) in _MEGNET_FILES.items():
    _dataset, _target = _stem.split("/")
    register_preset(
        Preset(
            name=f"megnet-{_dataset}-{_target}",
            kind="megnet",
            files={
                "hdf5": PresetFile(f"megnet/{_stem}.hdf5", _h5, f"{_MEGNET_URL}/{_stem}.hdf5"),
                "json": PresetFile(f"megnet/{_stem}.hdf5.json", _js, f"{_MEGNET_URL}/{_stem}.hdf5.json"),
            },
            description=_desc,
        )
    )


#: megnet's 16-wide elemental embedding (the AtomSets paper's V0 for compositions).
MEGNET_ELEMENT_TABLE_PRESET = "megnet-elemental-embedding"
register_preset(
    Preset(
        name=MEGNET_ELEMENT_TABLE_PRESET,
        kind="table",
        files={
            "json": PresetFile(
                "megnet/elemental_embedding_1MEGNet_layer.json",
                "43113e0980d95d93283a7f012c01e1c7a61f7c950196a2432edb4e04f50fe75c",
                "https://github.com/materialsvirtuallab/megnet/raw/master/megnet/data/"
                "elemental_embedding_1MEGNet_layer.json",
            )
        },
        description="MEGNet's 16-wide elemental embedding (megnet, BSD-3): V0 of AtomSets-V0",
    )
)
register_preset(
    Preset(
        name="cgat-matscholar-embedding",
        kind="table",
        files={
            "json": PresetFile(
                "cgat/matscholar-embedding.json",
                "a2fe38f38d23921ba46484579ca52bd3233e96786ee591e593c6be84bca74d58",
                "https://github.com/hyllios/CGAT/raw/HEAD/CGAT/embeddings/matscholar-embedding.json",
            )
        },
        description="matscholar 200-wide element embedding (CGAT's starting node features; hyllios/CGAT, MIT)",
    )
)

def bundled_dir() -> Path:
    """The folder of the checkpoints this project trained and of megnet's element table (``pretrained/`` in the
    repository)."""
    import atomsets_tf.pretrained  # the installed presets' data package (no code), found on first use

    return Path(atomsets_tf.pretrained.__file__).parent


#: The registry of the bundled checkpoints, in :func:`bundled_dir`.
BUNDLED_REGISTRY = "presets.json"


def _register_bundled() -> None:
    """Register every checkpoint of ``presets.json`` (kind, file, sha256, description, model card)."""
    registry = bundled_dir() / BUNDLED_REGISTRY
    if not registry.is_file():
        return
    for entry in json.loads(registry.read_text())["presets"]:
        register_preset(Preset(
            name=entry["name"], kind=entry["kind"],
            files={"keras": PresetFile(entry["file"], entry["sha256"])},
            description=entry["description"],
            metadata={k: v for k, v in entry.items() if k not in ("name", "kind", "file", "sha256", "description")},
        ))


_register_bundled()


def preset_file(name: str, kind: str, download: bool = True) -> Path:
    """The one file of a single-file preset ``name``, which must be of ``kind`` (``"atomsets"``, ``"cgat"``).

    Raises:
        UnknownPresetError: an unknown name, another kind, or a file not found.
    """
    preset = get_preset(name)
    if preset.kind != kind:
        raise UnknownPresetError(f"preset {name!r} is of kind {preset.kind!r}, not {kind!r}")
    return next(iter(resolve(name, download=download).values()))


def preset_names() -> list[str]:
    """Every registered preset name."""
    return sorted(_REGISTRY)


def get_preset(name: str) -> Preset:
    """The registered :class:`Preset` called ``name``.

    Raises:
        UnknownPresetError: an unknown name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPresetError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}") from None


def cache_dir() -> Path:
    """The download cache: ``$ATOMSETS_TF_CACHE`` or ``~/.cache/atomsets_tf``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "atomsets_tf"


def search_dirs() -> list[Path]:
    """The local folders searched for preset files, in order."""
    dirs = []
    if os.environ.get(MODELS_ENV):
        dirs.append(Path(os.environ[MODELS_ENV]).expanduser())
    dirs.append(bundled_dir())
    dirs.append(cache_dir())
    shared = shared_dir()
    if shared is not None and (shared / "pretrained").is_dir():
        dirs.append(shared / "pretrained")
    return dirs


def _find_local(pf: PresetFile) -> Path | None:
    for d in search_dirs():
        p = d / pf.relpath
        if p.is_file():
            if sha256_file(p) == pf.sha256:
                return p
            warnings.warn(f"{p} does not have the expected sha256 for this preset; ignoring it", stacklevel=3)
    return None


def _download(pf: PresetFile, dest: Path, progress: bool = False) -> Path:
    if not pf.url:
        raise OSError("no download URL")
    h = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(pf.url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(tmp, "wb") as out:  # noqa: S310
            total = resp.headers.get("Content-Length")
            with progress_bar(int(total) if total else None, pf.relpath, "B", enabled=progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        if h.hexdigest() != pf.sha256:
            raise OSError(f"downloaded {pf.url} has sha256 {h.hexdigest()}, expected {pf.sha256}")
    return dest


def is_available(name: str) -> bool:
    """Whether every file of preset ``name`` is present locally (with the right sha256)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return all(_find_local(pf) is not None for pf in get_preset(name).files.values())


def resolve(name: str, download: bool = True, progress: bool = False) -> dict[str, Path]:
    """Local paths of preset ``name``'s files by role (e.g. ``{"hdf5": ..., "json": ...}``).

    Downloads missing files into :func:`cache_dir` when ``download`` is set (with ``progress``, a bar per file).

    Raises:
        UnknownPresetError: an unknown name.
        PresetNotAvailableError: a file that is not on disk and could not be downloaded; the message says
            where to get it and where to put it.
    """
    preset = get_preset(name)
    paths: dict[str, Path] = {}
    for role, pf in preset.files.items():
        p = _find_local(pf)
        if p is None:
            if not download:
                raise PresetNotAvailableError(not_available_message(name, "downloads are disabled"))
            try:
                p = _download(pf, cache_dir() / pf.relpath, progress)
            except Exception as exc:
                raise PresetNotAvailableError(not_available_message(name, f"the download failed: {exc}")) from exc
        paths[role] = p
    return paths


def requirements(name: str) -> list[str]:
    """The other presets that preset ``name`` needs to run (a head's parent MEGNet), read from its model file.

    A bundled ``.keras`` file's config names its parent by preset name; that name is the one fact, so nothing
    is listed twice. Presets of other kinds need nothing else.
    """
    preset = get_preset(name)
    return _presets_named_in(_find_local(preset.files["keras"]) if "keras" in preset.files else None, name)


def _presets_named_in(path: Path | None, name: str) -> list[str]:
    """The registered presets other than ``name`` that the ``.keras`` file at ``path`` names in its config."""
    if path is None or not zipfile.is_zipfile(path):
        return []
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value != name and value in _REGISTRY:
            found.add(value)

    walk(config)
    return sorted(found)


def missing_files(name: str) -> list[tuple[str, PresetFile]]:
    """``(preset, file)`` of every file that preset ``name`` or a preset it needs lacks on disk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(n, pf) for n in [name, *requirements(name)] for pf in get_preset(n).files.values()
                if _find_local(pf) is None]


def not_available_message(name: str, reason: str) -> str:
    """One line: which files of preset ``name`` are missing, their URLs, the layout to put them in, the command."""
    missing = missing_files(name) or [(name, pf) for pf in get_preset(name).files.values()]
    files = "; ".join(f"{pf.relpath} from {pf.url}" if pf.url else f"{pf.relpath} (no public URL: copy it from "
                      "another installation)" for _, pf in missing)
    return (f"preset {name!r} is not on disk ({reason}). Run `atomsets-tf models --download {name}` when online, "
            f"or fetch {files}, keep each at that path inside one folder (e.g. <folder>/{missing[0][1].relpath}) "
            f"and set {MODELS_ENV}=<folder>")


def download(name: str, progress: bool = True) -> dict[str, Path]:
    """Fetch preset ``name`` and every preset it needs into :func:`cache_dir` (sha256-checked).

    Files already on disk are not fetched again. Returns every file's local path by its relative path; with
    ``progress``, a bar per file on stderr.

    Raises:
        UnknownPresetError: an unknown name.
        PresetNotAvailableError: a download failed (the message says how to get the files by hand).
    """
    paths = {}
    for needed in [name, *requirements(name)]:
        files = get_preset(needed).files
        paths.update({files[role].relpath: path for role, path in resolve(needed, progress=progress).items()})
    return paths


def list_presets() -> list[dict]:
    """Every preset: ``name``, ``kind``, ``description``, ``available`` (it and every preset it needs are on disk),
    ``missing`` (the presets among them that are not, itself included), ``path`` of its main file and ``url``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = {name: {role: _find_local(pf) for role, pf in _REGISTRY[name].files.items()} for name in preset_names()}
    out = []
    for name in preset_names():  # each file is found (and its sha256 checked) once, above
        p = _REGISTRY[name]
        needed = [name, *_presets_named_in(local[name].get("keras"), name)]
        missing = sorted(n for n in needed if any(path is None for path in local[n].values()))
        main = local[name][next(iter(p.files))]
        out.append(
            {
                "name": name,
                "kind": p.kind,
                "description": p.description,
                "available": not missing,
                "missing": missing,
                "path": None if main is None else str(main),
                "url": next(iter(p.files.values())).url,
            }
        )
    return out
