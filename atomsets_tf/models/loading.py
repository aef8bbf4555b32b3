"""One entry point for every model the package reads: AtomSets, MEGNet and CGAT.

:func:`load_model` takes a path (``.keras``, megnet ``.hdf5``, CGAT Lightning
``.ckpt``) or a preset name; :func:`predict_table` and :func:`tap_table` run
whatever it returned on a data table.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from atomsets_tf.data.io import Table
from atomsets_tf.errors import AtomSetsError, CheckpointError


def _keras_class_name(path: Path) -> str:
    """The top-level class name in a ``.keras`` file's ``config.json`` (read as data, nothing executed)."""
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path.name} is not a .keras model file ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path.name} is not a .keras model file (its config.json is not an object)")
    name = str(config.get("class_name", ""))
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if name == "Functional" and isinstance(layers, list):
        configs = [layer.get("config") for layer in layers if isinstance(layer, dict)]
        if any(isinstance(c, dict) and c.get("name") == "gaussian_expansion" for c in configs):
            return "MEGNet"
    return name


def load_model(spec: str | os.PathLike):
    """Load a model by path or preset name.

    Returns an :class:`~atomsets_tf.models.AtomSets`, a
    :class:`~atomsets_tf.megnet.model.MEGNet` or a :class:`~atomsets_tf.cgat.model.CGAT`.

    Raises:
        CheckpointError: an unreadable, corrupt or foreign file.
        UnknownPresetError: a name that is neither a file nor a preset.
    """
    p = Path(os.fspath(spec))
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".hdf5", ".h5"):
            from atomsets_tf.megnet.model import MEGNet

            return MEGNet.from_checkpoint(p)
        if suffix == ".ckpt":
            from atomsets_tf.cgat.model import load_cgat

            return load_cgat(p)
        if suffix == ".keras":
            kind = _keras_class_name(p)
            if kind == "MEGNet":
                from atomsets_tf.megnet.model import MEGNet

                return MEGNet.load(p)
            if kind == "CGAT":
                from atomsets_tf.cgat.model import load_cgat

                return load_cgat(p)
            from atomsets_tf.models.predict import load_keras_model

            return load_keras_model(p)
        raise CheckpointError(f"{p.name}: unknown model format (expected .keras, megnet .hdf5 or CGAT .ckpt)")
    if any(sep in os.fspath(spec) for sep in (os.sep, "/")) or p.suffix in (".keras", ".hdf5", ".h5", ".ckpt"):
        raise CheckpointError(f"no such model file: {p}")
    from atomsets_tf import presets

    preset = presets.get_preset(str(spec))
    if preset.kind == "megnet":
        from atomsets_tf.megnet.model import MEGNet

        return MEGNet.from_preset(preset.name)
    paths = presets.resolve(preset.name)
    return load_model(next(iter(paths.values())))


def model_kind(model) -> str:
    """``"atomsets"``, ``"megnet"`` or ``"cgat"``."""
    name = type(model).__name__
    return {"AtomSets": "atomsets", "MEGNet": "megnet", "CGAT": "cgat"}.get(name, name.lower())


def _require_structures(table: Table, what: str) -> None:
    if table.kind != "structure":
        raise AtomSetsError(f"{what} needs structures, but {table.source or 'the data'} holds compositions")


def predict_table(model, table: Table, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Predictions (in target units) of any loaded model for every entry of ``table``, in order."""
    kind = model_kind(model)
    if kind == "atomsets":
        from atomsets_tf.models.predict import predict_atomsets

        return predict_atomsets(model, table, max(batch_size, 256))
    _require_structures(table, f"a {kind.upper()} model")
    if kind == "megnet":
        return np.asarray(model.predict(table.inputs, batch_size=batch_size, progress=progress, ids=table.ids))
    return np.asarray(model.predict_structures(table.inputs, batch_size=batch_size))


def tap_table(model, table: Table, names, batch_size: int = 32, progress: bool = False) -> dict:
    """Intermediate features of a MEGNet or CGAT model (see their ``tap``)."""
    kind = model_kind(model)
    _require_structures(table, "tapping")
    if kind == "megnet":
        return model.tap(table.inputs, list(names), batch_size=batch_size, progress=progress, ids=table.ids)
    if kind == "cgat":
        from atomsets_tf.errors import UnknownTapError

        valid = model.tap_names()
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise UnknownTapError(f"unknown tap {unknown[0]!r}; valid taps: {', '.join(valid)}")
        return model.tap(table.inputs, list(names), batch_size=batch_size)
    raise AtomSetsError("only MEGNet and CGAT models have taps")


def describe(model) -> str:
    """A text description of any loaded model."""
    kind = model_kind(model)
    if kind == "megnet":
        return model.describe()
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    if kind == "cgat":
        lines.append("taps: " + ", ".join(model.tap_names()))
    return "\n".join(lines)
