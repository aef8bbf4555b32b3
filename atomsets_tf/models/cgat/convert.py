"""PyTorch Lightning CGAT checkpoints (``.ckpt``) -> the Keras :class:`~atomsets_tf.models.cgat.model.CGAT`.

The file is read (torch optional, ``weights_only=True``) by
:func:`~atomsets_tf.models.cgat.checkpoint.read_checkpoint`, re-exported here.

The model configuration is inferred from the state_dict's shapes (the hyper-parameters are only
cross-checked), and every Keras variable must receive a tensor of the right shape. The weights of
the original's discarded edge attention (``graphs.k.Edge.MH_A/MH_M``, golden README surprise 4)
are accepted and ignored.

The torch-free part (numpy state_dict <-> model: :func:`config_from_state_dict`,
:func:`load_state_dict`, :func:`export_state_dict`) lives in :mod:`atomsets_tf.models.cgat._common` and
is re-exported here. Imports go one way: this module -> :mod:`~atomsets_tf.models.cgat.model` ->
:mod:`~atomsets_tf.models.cgat.checkpoint` and ``_common``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.errors import OutputPathError
from atomsets_tf.models.cgat._common import (  # noqa: F401 - the torch-free state_dict mapping, re-exported here
    config_from_state_dict,
    export_state_dict,
    load_state_dict,
)
from atomsets_tf.models.cgat.checkpoint import read_checkpoint  # noqa: F401 - re-exported
from atomsets_tf.models.cgat.elements import ElementEmbedding, load_matscholar_embedding
from atomsets_tf.models.cgat.model import CGAT


def model_from_state_dict(state: dict[str, np.ndarray], hparams: dict[str, Any] | None = None,
                          **overrides: Any) -> CGAT:
    """Build a :class:`~atomsets_tf.models.cgat.model.CGAT` from a numpy ``CGAtNet`` state_dict and load it."""
    return CGAT.from_state_dict(state, hparams, **overrides)


def model_from_checkpoint(path: str | os.PathLike, embedding: ElementEmbedding | None = None) -> CGAT:
    """Read a Lightning ``.ckpt`` (safely) into a :class:`~atomsets_tf.models.cgat.model.CGAT`
    (see :meth:`CGAT.from_checkpoint <atomsets_tf.models.cgat.model.CGAT.from_checkpoint>`)."""
    return CGAT.from_checkpoint(str(path), embedding=embedding)


def convert_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike,
                       embedding_path: str | os.PathLike | None = None) -> Path:
    """``atomsets-tf convert CKPT -o model.keras``: write a CGAT checkpoint as a ``.keras`` file.

    The matscholar embedding (``embedding_path`` or its default location, if found) is stored in
    the model so that it can predict from structures on its own.

    Raises:
        OutputPathError: ``out_path`` does not end in ``.keras`` (checked before anything is read).
        CheckpointError: ``ckpt_path`` is not a loadable CGAT checkpoint.
        FileNotFoundError: no such checkpoint (or embedding, when ``embedding_path`` is given).
    """
    out_path = Path(out_path)
    if out_path.suffix != ".keras":
        raise OutputPathError(f"the output must end in .keras (Keras' model file format), got {out_path}")
    try:
        embedding = load_matscholar_embedding(embedding_path)
    except FileNotFoundError:
        if embedding_path is not None:
            raise
        embedding = None
    model = model_from_checkpoint(ckpt_path, embedding=embedding)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".convert.") as tmpdir:
        tmp = Path(tmpdir) / out_path.name
        model.save(tmp)
        os.replace(tmp, out_path)
    return out_path
