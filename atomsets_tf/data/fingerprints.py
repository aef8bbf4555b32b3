"""The fingerprint of data's content: :func:`entries_hash`, the one hash of entries' ids, inputs and targets.

Runs on in-memory data (:func:`~atomsets_tf.data.inputs.table_content_hash`), prepared datasets (their
``data_hash``, :mod:`atomsets_tf.data.prepared_writer`) and tap folders (what an interrupted ``tap -o DIR/`` resumes,
:class:`~atomsets_tf.workflows.outputs.TapShardWriter`) use it, so that changed structures under the same ids never
pass for the same data. This module imports neither TensorFlow nor pymatgen.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence

import numpy as np

from atomsets_tf.errors import DataFormatError

__all__ = ["entries_hash", "is_structure"]


def is_structure(value) -> bool:
    """Whether ``value`` is a pymatgen ``Structure`` (or ``IStructure``), without importing pymatgen."""
    module = sys.modules.get("pymatgen.core.structure")  # a Structure exists only once pymatgen has been imported
    return module is not None and isinstance(value, module.IStructure)


def entries_hash(ids: Sequence[str], inputs: Sequence, targets: np.ndarray | None = None) -> str:
    """The SHA-256 of entries' ids, contents and targets, in one pass over the entries.

    Each input is hashed canonically: a pymatgen structure by its species, lattice and fractional coordinates; a
    composition string as written; anything else (a structure dict as a JSON file holds it, a dict of arrays) by
    its JSON with the keys sorted (arrays by dtype, shape and the SHA-256 of their bytes), so that neither the
    order of a dict's keys nor the formatting of the numbers in a file changes it. The order of the entries does
    (it is their positions).

    Args:
        ids: the entry ids, ``ids[i]`` naming ``inputs[i]``.
        inputs: the entries.
        targets: one float per entry, or ``None``.

    Returns:
        The hex digest (64 characters).

    Raises:
        DataFormatError: an input that is none of the above (naming its id).
    """
    digest = hashlib.sha256()
    for entry_id, value in zip(ids, inputs):
        digest.update(f"{entry_id}\0".encode())
        try:
            digest.update(_canonical_bytes(value))
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"entry {entry_id} cannot be fingerprinted ({exc}): entries are structures, "
                                  f"compositions or JSON-able values (dicts of arrays, ...)") from None
        digest.update(b"\0")
    if targets is not None:
        digest.update(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _canonical_bytes(value) -> bytes:
    """One input as the bytes :func:`entries_hash` hashes."""
    if is_structure(value):
        return b"".join([" ".join(site.species_string for site in value).encode(),
                         np.ascontiguousarray(value.lattice.matrix, dtype=np.float64).tobytes(),
                         np.ascontiguousarray(value.frac_coords, dtype=np.float64).tobytes()])
    if isinstance(value, str):
        return value.encode()
    return _ENCODER.encode(value).encode()


def _json_default(value) -> object:
    """What :func:`entries_hash` writes for a value JSON has no form of (an array, a NumPy scalar, a structure)."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {"dtype": array.dtype.str, "shape": list(array.shape),
                "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "as_dict"):  # a pymatgen object inside a dict
        return value.as_dict()
    return json.JSONEncoder().default(value)  # raises the TypeError that names the type


#: Canonical JSON: keys sorted, compact; one encoder for all entries.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_json_default)
