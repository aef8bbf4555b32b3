"""atomsets_tf.data."""

# data.inputs imports data.io and hands it the reader of in-memory data (DataFrames, Atoms, pymatgen objects)
# that data.io.load calls: imported here so that it is in place whenever data.io is.
from atomsets_tf.data import inputs  # noqa: F401
