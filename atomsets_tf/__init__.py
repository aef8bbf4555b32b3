"""atomsets-tf: AtomSets transfer learning with graph networks in Keras 3.

Subpackages:

* :mod:`atomsets_tf.layers`: Keras 3 readout layers (``WeightedMeanReadout``, ``WeightedSet2Set``).
* :mod:`atomsets_tf.models`: AtomSets heads.
* :mod:`atomsets_tf.data`: matbench-layout data, splits and padded ``tf.data`` pipelines.
* :mod:`atomsets_tf.models.megnet`: MEGNet in Keras 3, loading the published checkpoints.
* :mod:`atomsets_tf.models.cgat`: a Keras 3 port of CGAT.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from atomsets_tf import errors  # noqa: E402
from atomsets_tf._version import __version__  # noqa: E402

__all__ = ["__version__", "errors"]
