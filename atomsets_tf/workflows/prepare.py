"""Preparing a data set once for a model: graphs or taps per structure, in TFRecord shards (``atomsets-tf prepare``).

:func:`prepare` reads a data file (anything :func:`~atomsets_tf.data.io.load` reads) and writes a prepared dataset
(:mod:`atomsets_tf.data.prepared_format`) for one model:

* a MEGNet or CGAT (checkpoint, ``.keras`` file or preset): the crystal graphs, built with that model's own graph
  settings (MEGNet: cutoff; CGAT: radius, neighbours, the elements its embedding covers), in ``workers``
  processes;
* a structural AtomSets model (``atomsets-v1``, ``mlp-f``, ...): the weighted sets its head reads, tapped from the
  parent MEGNet ``features_from`` (default: the paper's), in this process.

Every command that takes a data file takes the folder instead (``fit``, ``retrain``, ``benchmark``,
``learning-curve``, ``predict``, ``tap``): the models then read the records instead of building them, after
checking that they were prepared for that kind of model with its settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from atomsets_tf.data import io as data_io
from atomsets_tf.data.inputs import DataLike, as_table
from atomsets_tf.data.prepared_writer import prepare_dataset
from atomsets_tf.data.structures import ParsedStructures
from atomsets_tf.errors import AtomSetsError
from atomsets_tf.models.atomsets import STRUCTURAL_MODELS
from atomsets_tf.models.atomsets.features import model_key
from atomsets_tf.models.base import BuildRequest
from atomsets_tf.models.loading import load_model
from atomsets_tf.models.registry import FIT_MODELS, entry, family, family_of

__all__ = ["prepare", "record_builder"]


def record_builder(model: str, features_from: str | None = None) -> tuple[object, dict]:
    """The record builder for ``model`` and the parent description a manifest records.

    Args:
        model: a MEGNet or CGAT checkpoint, ``.keras`` file or preset, or a model name its family builds from
            scratch and reads prepared records for (a structural AtomSets model, or a registered family's).
        features_from: the parent MEGNet of a structural AtomSets model (default: the paper's).

    Returns:
        ``(builder, parent)``; ``parent`` has the family, the name given and the sha256 of its file.
    """
    if isinstance(model, str) and model in FIT_MODELS:  # a zoo name its family builds: the records it trains on
        row = entry(model)
        builder = family(row.family).record_builder(BuildRequest(model, features_from=features_from))
        return builder, getattr(builder, "parent", None) or {"family": row.family, "name": model}
    if features_from is not None:
        raise AtomSetsError(f"--features-from is for structural AtomSets models ({', '.join(STRUCTURAL_MODELS)}), "
                            f"not {model}")
    net = load_model(model)
    fam = family_of(net)
    return fam.record_builder(net), {"family": fam.name, "name": os.fspath(model), "sha256": model_key(model)}


def _read(data, parse: bool) -> data_io.Table:
    """The table to prepare: a JSON file of structures unparsed (unless ``parse``: the workers parse it), any
    other data (a path, a Table, structures or ASE Atoms in memory) as :func:`~atomsets_tf.data.inputs.as_table`
    reads it."""
    table = None
    if isinstance(data, (str, os.PathLike)) and not parse:
        table = data_io.read_raw_structures(data)
    table = table if table is not None else as_table(data)
    if table.kind != "structure":
        raise AtomSetsError(f"prepare needs structures, but {table.source or 'the data'} holds {table.kind}s")
    return table


def prepare(
    data: DataLike,
    model: str,
    out_dir: str | os.PathLike,
    workers: int = 1,
    features_from: str | None = None,
    shard_size: int = 1024,
    strict: bool = False,
    restart: bool = False,
    progress: bool = True,
):
    """Prepare ``data`` for ``model`` in ``out_dir`` (see the module docstring); returns the manifest.

    Args:
        data: a data file, folder or matbench task name, a :class:`~atomsets_tf.data.io.Table` of structures, or
            structures in memory (pymatgen, ASE ``Atoms``, a ``DataFrame``: see
            :func:`~atomsets_tf.data.inputs.as_table`).
        model: see :func:`record_builder`.
        out_dir: the dataset folder. A run interrupted there resumes (finished shards are kept).
        workers: processes that build graphs (taps are computed in this process).
        features_from: see :func:`record_builder`.
        shard_size: entries per shard.
        strict: stop at the first entry that cannot be prepared (else it is listed in the manifest and skipped).
        restart: discard a dataset prepared with other settings in ``out_dir``.
        progress: a progress bar on stderr.

    Raises:
        AtomSetsError: bad data, an unknown model, or (``strict``) an entry that cannot be prepared.
        PreparedDatasetError: ``out_dir`` holds a dataset prepared otherwise (other settings, or other data: other
            ids, targets or structures; and not ``restart``); no entry at all could be prepared (naming the first
            reason: the file and the entry). A data set of which only some entries fail is prepared, and the
            manifest lists the failures.
    """
    builder, parent = record_builder(model, features_from)
    batch_builder = getattr(builder, "build_batch", None)
    table = _read(data, parse=batch_builder is not None)
    if table.meta.get("raw_structures"):  # parsed and checked entry by entry, in the workers
        builder = ParsedStructures(builder, table.source)
    task = table.meta.get("task") or Path(table.source).name.split(".")[0]
    source = {"data": str(table.source), "target_name": table.target_name,
              **({"task": task} if task.startswith("matbench_") else {})}
    return prepare_dataset(table.ids, table.inputs, table.targets, out_dir, builder, parent=parent,
                           workers=workers, shard_size=shard_size, strict=strict, progress=progress,
                           restart=restart, batch_builder=batch_builder, source=source)
