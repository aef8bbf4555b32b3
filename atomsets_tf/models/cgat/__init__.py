"""A Keras 3 port of CGAT (crystal graph attention networks, hyllios/CGAT).

* :class:`CGAT` — the model (padded batch layout, taps, stored target normalisation);
* :mod:`atomsets_tf.models.cgat.data` — inputs from pymatgen structures (graphs, collate, the record builder),
  :mod:`~atomsets_tf.models.cgat.neighbours` — their neighbour geometry,
  :mod:`~atomsets_tf.models.cgat.elements` — the element embedding tables;
* :func:`convert_checkpoint` / :meth:`CGAT.from_checkpoint` — PyTorch Lightning ``.ckpt`` files
  (torch optional, loaded with ``weights_only=True``).

The names are imported on first use (PEP 562): the graph builders' modules import no TensorFlow, so
that ``atomsets-tf prepare --workers N`` starts light worker processes.
"""

from __future__ import annotations

from atomsets_tf.models.registry import ZooEntry
from atomsets_tf.utils.aliases import lazy_exports

#: The CGAT models of the zoo (:mod:`~atomsets_tf.models.registry`): trained from scratch with
#: a parent's architecture, or a pretrained parent retrained.
ZOO_ROWS: tuple[ZooEntry, ...] = (
    ZooEntry("cgat", "cgat", "structure"),
    ZooEntry("cgat-head", "cgat", "structure", mode="head"),
    ZooEntry("cgat-full", "cgat", "structure", mode="full"),
)

_EXPORTS = {
    "CGAT": "atomsets_tf.models.cgat.model",
    "CGATGraph": "atomsets_tf.models.cgat.data",
    "ElementEmbedding": "atomsets_tf.models.cgat.elements",
    "cgat_l1_loss": "atomsets_tf.models.cgat.model",
    "collate": "atomsets_tf.models.cgat.data",
    "convert_checkpoint": "atomsets_tf.models.cgat.convert",
    "iterate_batches": "atomsets_tf.models.cgat.data",
    "load_cgat": "atomsets_tf.models.cgat.model",
    "load_matscholar_embedding": "atomsets_tf.models.cgat.elements",
    "read_checkpoint": "atomsets_tf.models.cgat.convert",
    "structure_to_graph": "atomsets_tf.models.cgat.data",
    "structures_to_graphs": "atomsets_tf.models.cgat.data",
}

__all__ = ["ZOO_ROWS", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
