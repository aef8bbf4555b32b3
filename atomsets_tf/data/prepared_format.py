"""The format of a prepared dataset, the one place that its writer and its reader share.

A *prepared dataset* is a folder of TFRecord shards of records (see
:mod:`atomsets_tf.data.records`) and a ``manifest.json``::

    manifest.json           what the records are (kind, schema, settings, parent), which entries they
                            hold (ids, positions, targets, sizes), the shards and their sha256, the failures
    shard-00000.tfrecord    tf.train.Example records of entries [0, shard_size) that succeeded
    shard-00000.json        its sidecar: ids, positions, sizes, failures, sha256, n_records

:func:`~atomsets_tf.data.prepared_writer.prepare_dataset` writes one, and
:class:`~atomsets_tf.data.prepared.PreparedDataset` opens, checks and streams it.

Each field of a record is stored as its raw little-endian bytes (``f:<name>``),
with one length per length group (``n:<group>``), the entry's global position
(``position``, its index in the ``entries`` given to
:func:`~atomsets_tf.data.prepared_writer.prepare_dataset`) and its id (``id``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from atomsets_tf.data.records import RecordSchema

__all__ = ["FORMAT", "VERSION", "Manifest", "encode_record", "record_features"]

#: The ``format`` of every manifest.
FORMAT = "atomsets-tf-prepared"
#: The manifest layout version.
VERSION = 1

#: A manifest, as the JSON dict written to ``manifest.json``.
Manifest = dict


def encode_record(record: dict[str, np.ndarray], schema: RecordSchema, position: int, entry_id: str) -> bytes:
    """One record as a serialised tf.train.Example (deterministic bytes)."""
    feature = {
        "position": tf.train.Feature(int64_list=tf.train.Int64List(value=[position])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[entry_id.encode()])),
    }
    for group, n in schema.lengths(record).items():
        feature[f"n:{group}"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[n]))
    for name in schema.fields:
        feature[f"f:{name}"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[record[name].tobytes()]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def record_features(schema: RecordSchema) -> dict:
    """The tf.io features of a serialised record (``id`` is not read back)."""
    features = {"position": tf.io.FixedLenFeature([], tf.int64)}
    features.update({f"n:{g}": tf.io.FixedLenFeature([], tf.int64) for g in schema.groups})
    features.update({f"f:{name}": tf.io.FixedLenFeature([], tf.string) for name in schema.fields})
    return features
