"""Records and their schema: the TensorFlow-free part of prepared datasets (:mod:`atomsets_tf.data.prepared_format`).

A *record* is one example as a dict ``name -> np.ndarray``. Its
:class:`RecordSchema` says, for every field, the dtype it is stored with, its
trailing shape, and the *length group* its ragged axis 0 belongs to (all fields
of a group share that length: "atoms", "bonds", ...), and how a list of records
becomes one padded batch (:meth:`RecordSchema.pad_batch`).

A :class:`RecordBuilder` turns one entry (a structure, a composition, ...) into a
record. Builders run in worker processes, so this module (which unpickles them
there) imports neither TensorFlow nor :mod:`atomsets_tf.data.prepared_writer` or
:mod:`atomsets_tf.data.prepared`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from atomsets_tf.data.padding import pad_stack, padded_length
from atomsets_tf.errors import AtomSetsError, RecordSchemaError

#: The file that describes a prepared dataset's folder (see :mod:`atomsets_tf.data.prepared_format`).
MANIFEST = "manifest.json"
#: Stored dtypes a schema may use (those ``tf.io.decode_raw`` reads back).
STORED_DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
#: Dtypes of a padded batch.
FEED_DTYPES = ("int32", "int64", "float32", "float64", "bool")


@dataclass(frozen=True)
class FieldSpec:
    """How one field of a record is stored and fed.

    Attributes:
        dtype: numpy dtype as stored (``"uint8"``, ``"int32"``, ``"float32"``, ...).
        shape: trailing shape after the ragged axis 0 (``(24,)`` or ``()``);
            the full shape when ``group`` is ``None``.
        group: name of the ragged axis-0 length group (``"atoms"``, ``"bonds"``),
            or ``None`` for a field of fixed shape.
        feed_dtype: dtype of the field in a padded batch (``"int32"`` / ``"float32"``).
    """

    dtype: str
    shape: tuple[int, ...] = ()
    group: str | None = None
    feed_dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "feed_dtype", np.dtype(self.feed_dtype).name)
        if self.dtype not in STORED_DTYPES:
            raise RecordSchemaError(f"stored dtype {self.dtype} is not one of {', '.join(STORED_DTYPES)}")
        if self.feed_dtype not in FEED_DTYPES:
            raise RecordSchemaError(f"feed dtype {self.feed_dtype} is not one of {', '.join(FEED_DTYPES)}")
        if any(d < 0 for d in self.shape):
            raise RecordSchemaError(f"field shape {self.shape} has a negative dimension")

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "group": self.group, "feed_dtype": self.feed_dtype}

    @classmethod
    def from_json(cls, d: dict) -> FieldSpec:
        return cls(str(d["dtype"]), tuple(d["shape"]), d["group"], str(d["feed_dtype"]))


@dataclass(frozen=True)
class RecordSchema:
    """The fields of a record, and the layout of a padded batch of records.

    Attributes:
        fields: field name -> :class:`FieldSpec`.
        masks: input name -> group: a float32 mask, 1 over that group's length
            and 0 on padding, added to every padded batch.
        multiples: group -> padded lengths are rounded up to this multiple
            (:func:`~atomsets_tf.data.padding.padded_length`); 1 for a group not listed.
        size_group: the group whose length is an example's size (for bucketing).
    """

    fields: dict[str, FieldSpec]
    masks: dict[str, str] = field(default_factory=dict)
    multiples: dict[str, int] = field(default_factory=dict)
    size_group: str | None = None

    def __post_init__(self):
        if not self.fields:
            raise RecordSchemaError("a record schema needs at least one field")
        groups = self.groups
        clash = sorted(set(self.masks) & set(self.fields))
        if clash:
            raise RecordSchemaError(f"mask name(s) {', '.join(clash)} are also field names")
        used = [*self.masks.values(), *self.multiples, *([self.size_group] if self.size_group else [])]
        for group in used:
            if group not in groups:
                raise RecordSchemaError(f"group {group!r} has no field (fields' groups: {', '.join(groups) or 'none'})")
        if any(int(m) < 1 for m in self.multiples.values()):
            raise RecordSchemaError(f"multiples must be at least 1, got {self.multiples}")

    @property
    def groups(self) -> list[str]:
        """The length groups, in the order their first field appears."""
        return list(dict.fromkeys(spec.group for spec in self.fields.values() if spec.group is not None))

    def multiple(self, group: str) -> int:
        """The multiple padded lengths of ``group`` are rounded up to."""
        return int(self.multiples.get(group, 1))

    def to_json(self) -> dict:
        return {
            "fields": {name: spec.to_json() for name, spec in self.fields.items()},
            "masks": dict(self.masks),
            "multiples": {g: int(m) for g, m in self.multiples.items()},
            "size_group": self.size_group,
        }

    @classmethod
    def from_json(cls, d: dict) -> RecordSchema:
        """The schema that :meth:`to_json` wrote.

        Raises:
            RecordSchemaError: ``d`` is not a schema.
        """
        try:
            fields = {str(name): FieldSpec.from_json(spec) for name, spec in d["fields"].items()}
            return cls(fields, dict(d["masks"]), {g: int(m) for g, m in d["multiples"].items()}, d["size_group"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, RecordSchemaError):
                raise
            raise RecordSchemaError(f"not a record schema ({type(exc).__name__}: {exc})") from None

    def lengths(self, record: dict[str, np.ndarray]) -> dict[str, int]:
        """Group -> its length in ``record`` (the axis-0 length of its fields)."""
        out = {}
        for name, spec in self.fields.items():
            if spec.group is not None and spec.group not in out:
                out[spec.group] = int(np.shape(record[name])[0])
        return out

    def size(self, record: dict[str, np.ndarray]) -> int:
        """An example's size: the length of :attr:`size_group` (0 without one)."""
        if self.size_group is None:
            return 0
        return self.lengths(record)[self.size_group]

    def check_record(self, record: Any, entry_id: str) -> dict[str, np.ndarray]:
        """``record`` with every field as a C-contiguous array of its stored dtype.

        Raises:
            RecordSchemaError: naming ``entry_id`` and the field: a missing or
                extra field, a wrong shape, a group of fields of unequal lengths,
                or a value its stored dtype cannot hold.
        """
        if not isinstance(record, dict):
            raise RecordSchemaError(f"{entry_id}: a record must be a dict, got {type(record).__name__}")
        extra = sorted(set(record) - set(self.fields))
        missing = [name for name in self.fields if name not in record]
        if extra or missing:
            raise RecordSchemaError(f"{entry_id}: record fields differ from the schema "
                                    f"(missing: {', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'})")
        out, lengths = {}, {}
        for name, spec in self.fields.items():
            value = _stored(record[name], spec, f"{entry_id}: field {name!r}")
            if spec.group is not None:
                first = lengths.setdefault(spec.group, (name, len(value)))
                if first[1] != len(value):
                    raise RecordSchemaError(f"{entry_id}: field {name!r} has {len(value)} rows but {first[0]!r} "
                                            f"has {first[1]} (both in group {spec.group!r})")
            out[name] = value
        return out

    def pad_batch(self, records: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Records as one padded batch (NumPy), the layout fed to a model.

        Every ragged field is padded with 0 to ``padded_length(longest of its
        group in the batch, multiple)``, fixed fields are stacked, the masks are
        added, and every array has its field's ``feed_dtype``.

        Args:
            records: at least one record.

        Returns:
            name -> array with a leading batch axis: the fields, then the masks.

        Example:

        >>> schema = RecordSchema({"z": FieldSpec("uint8", (), "atoms", "int32")},
        ...                       masks={"atom_mask": "atoms"}, multiples={"atoms": 4}, size_group="atoms")
        >>> batch = schema.pad_batch([{"z": np.array([8, 1, 1], np.uint8)}, {"z": np.array([6], np.uint8)}])
        >>> batch["z"]
        array([[8, 1, 1, 0],
               [6, 0, 0, 0]], dtype=int32)
        >>> batch["atom_mask"]
        array([[1., 1., 1., 0.],
               [1., 0., 0., 0.]], dtype=float32)
        """
        if not records:
            raise ValueError("pad_batch needs at least one record")
        lengths = [self.lengths(r) for r in records]
        padded = {g: padded_length(max(n[g] for n in lengths), self.multiple(g)) for g in self.groups}
        out = {}
        for name, spec in self.fields.items():
            values = [np.asarray(r[name]) for r in records]
            if spec.group is None:
                out[name] = np.stack(values).astype(spec.feed_dtype)
            else:
                out[name] = pad_stack(values, padded[spec.group], dtype=spec.feed_dtype)
        for name, group in self.masks.items():
            n = np.array([n[group] for n in lengths])
            out[name] = (np.arange(padded[group])[None, :] < n[:, None]).astype(np.float32)
        return out

    def tensor_spec(self) -> dict:
        """``tf.TensorSpec`` of each input of a padded batch (batch and ragged axes ``None``)."""
        import tensorflow as tf  # here only: builders unpickle this module in TensorFlow-free workers

        out = {}
        for name, spec in self.fields.items():
            shape = (None, *spec.shape) if spec.group is None else (None, None, *spec.shape)
            out[name] = tf.TensorSpec(shape, tf.as_dtype(spec.feed_dtype))
        for name in self.masks:
            out[name] = tf.TensorSpec((None, None), tf.float32)
        return out


def _stored(value: Any, spec: FieldSpec, what: str) -> np.ndarray:
    """``value`` as an array of ``spec``'s stored dtype and shape, or a RecordSchemaError naming ``what``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise RecordSchemaError(f"{what} is not an array ({exc})") from None
    if spec.group is None:
        ok = array.shape == spec.shape
        expected = spec.shape
    else:
        ok = array.ndim == 1 + len(spec.shape) and array.shape[1:] == spec.shape
        expected = ("n", *spec.shape)
    if not ok:
        raise RecordSchemaError(f"{what} has shape {array.shape}, expected {expected}")
    stored = np.ascontiguousarray(array, dtype=np.dtype(spec.dtype).newbyteorder("<"))
    if array.dtype != stored.dtype and array.dtype.kind in "biu" and not np.array_equal(stored, array):
        raise RecordSchemaError(f"{what} holds values that {spec.dtype} cannot store")
    return stored


@runtime_checkable
class RecordBuilder(Protocol):
    """Turns one entry into a record. Picklable and TensorFlow-free: it runs in worker processes.

    Attributes:
        kind: what the records are, e.g. ``"cgat-graph"``.
        schema: the :class:`RecordSchema` of its records.
        settings: JSON-able; everything the records depend on (cutoff, ...).
    """

    kind: str
    schema: RecordSchema
    settings: dict

    def __call__(self, entry: Any, entry_id: str) -> dict[str, np.ndarray]:
        """The record of ``entry``; raises an ``AtomSetsError`` for a bad entry."""


@dataclass(frozen=True)
class WrappingBuilder:
    """A record builder that turns its own kind of entry into what ``inner`` builds from (subclasses define
    ``__call__``); its records, hence its kind, schema and settings, are ``inner``'s."""

    inner: Any

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def schema(self) -> RecordSchema:
        return self.inner.schema

    @property
    def settings(self) -> dict:
        return self.inner.settings


#: One built entry: (position, id, record or None, failure reason or None).
BuiltEntry = tuple[int, str, "dict[str, np.ndarray] | None", "str | None"]


def failure_reason(exc: AtomSetsError, entry_id: str) -> str:
    """The message of a failed entry, starting with its id when it does not name it."""
    message = str(exc) or type(exc).__name__
    return message if entry_id in message else f"{entry_id}: {message}"


def build_entries(
    builder: Callable[[Any, str], dict],
    schema: RecordSchema,
    entries: Sequence,
    ids: Sequence[str],
    first_position: int,
    on_entry: Callable[[], None] | None = None,
) -> list[BuiltEntry]:
    """Build the records of consecutive entries; a bad entry (an ``AtomSetsError``) is recorded, not raised.

    Args:
        builder: the record builder.
        schema: the schema every record is checked against.
        entries: the entries, ``ids[k]`` naming ``entries[k]``.
        ids: their ids.
        first_position: the global position of ``entries[0]``.
        on_entry: called after each entry (progress).

    Returns:
        One :data:`BuiltEntry` per entry, in order.

    Raises:
        RecordSchemaError: a record that does not follow ``schema`` (a builder bug).
    """
    out = []
    for k, (entry, entry_id) in enumerate(zip(entries, ids)):
        try:
            record = builder(entry, entry_id)
        except AtomSetsError as exc:
            out.append((first_position + k, entry_id, None, failure_reason(exc, entry_id)))
        else:
            out.append((first_position + k, entry_id, schema.check_record(record, entry_id), None))
        if on_entry is not None:
            on_entry()
    return out


_WORKER_BUILDER: list = []


def init_worker(builder: RecordBuilder) -> None:
    """Process-pool initializer: keep the builder (pickled once per worker)."""
    _WORKER_BUILDER[:] = [builder]


def build_in_worker(entries: Sequence, ids: Sequence[str], first_position: int) -> list[BuiltEntry]:
    """Process-pool task: :func:`build_entries` with the worker's builder (one shard)."""
    builder = _WORKER_BUILDER[0]
    return build_entries(builder, builder.schema, entries, ids, first_position)
