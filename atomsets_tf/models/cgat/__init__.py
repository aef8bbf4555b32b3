"""A Keras 3 port of CGAT (crystal graph attention networks, hyllios/CGAT).

* :class:`CGAT` — the model (padded batch layout, taps, stored target normalisation);
* :mod:`atomsets_tf.models.cgat.data` — inputs from pymatgen structures;
* :func:`convert_checkpoint` / :meth:`CGAT.from_checkpoint` — PyTorch Lightning ``.ckpt`` files
  (torch optional, loaded with ``weights_only=True``).
"""

from atomsets_tf.models.cgat.convert import convert_checkpoint, read_checkpoint
from atomsets_tf.models.cgat.data import (
    CGATGraph,
    ElementEmbedding,
    collate,
    iterate_batches,
    load_matscholar_embedding,
    structure_to_graph,
    structures_to_graphs,
)
from atomsets_tf.models.cgat.model import CGAT, cgat_l1_loss, load_cgat

__all__ = [
    "CGAT",
    "CGATGraph",
    "ElementEmbedding",
    "cgat_l1_loss",
    "collate",
    "convert_checkpoint",
    "iterate_batches",
    "load_cgat",
    "load_matscholar_embedding",
    "read_checkpoint",
    "structure_to_graph",
    "structures_to_graphs",
]
