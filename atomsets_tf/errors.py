"""Exception types of atomsets-tf.

Every error the package raises on bad input derives from :class:`AtomSetsError`,
so a caller (and the CLI, which turns them into a one-line ``Error:`` message
with exit code 2) can catch them all at once, or each kind on its own.
"""

from __future__ import annotations


class AtomSetsError(Exception):
    """Base class of every input error raised by atomsets-tf."""


class DataFormatError(AtomSetsError, ValueError):
    """A data file or array does not have the expected layout."""


class IntervalError(AtomSetsError, ValueError):
    """A checkpoint interval (``--checkpoint-every``) in none of the forms :mod:`atomsets_tf.utils.intervals`
    takes."""


class DisorderedSiteError(DataFormatError):
    """A structure with a partly occupied site (e.g. ``Fe0.5 Ni0.5``), given to a model that needs one element per
    site (MEGNet's and CGAT's graphs, and the AtomSets models that tap them); the message names the model."""


class CompositionParseError(AtomSetsError, ValueError):
    """A composition string that pymatgen cannot parse."""


class UnknownElementError(AtomSetsError, KeyError):
    """An element that the feature table or embedding does not cover."""

    def __str__(self) -> str:  # KeyError quotes its message; we don't want that.
        return str(self.args[0]) if self.args else ""


class EmptyStructureError(AtomSetsError, ValueError):
    """A structure or composition with no atoms."""


class IsolatedAtomError(AtomSetsError, ValueError):
    """An atom with no neighbour within the graph cutoff."""


class InvalidTargetError(AtomSetsError, ValueError):
    """A target value that is NaN, infinite or of the wrong kind."""


class MissingExtraError(AtomSetsError, ImportError):
    """An optional dependency that is not installed; the message names the extra to install
    (e.g. ``pip install "atomsets-tf[ase]"``)."""


class CheckpointError(AtomSetsError, ValueError):
    """A checkpoint that is corrupt, truncated, or not of the expected kind."""


class UnknownTapError(AtomSetsError, KeyError):
    """A tap name that the model does not expose."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownPresetError(AtomSetsError, KeyError):
    """A preset name that is not registered, or whose files cannot be found."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PresetNotAvailableError(AtomSetsError, FileNotFoundError):
    """A known preset whose files (or those of a preset it needs) are not on disk and could not be downloaded.

    The message names each missing file with its URL, the folder layout that ``$ATOMSETS_TF_MODELS`` points at,
    and the command that fetches them.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TooFewNeighboursError(IsolatedAtomError):
    """An atom with fewer neighbours within the cutoff than the model's fixed neighbour count (CGAT: 24)."""


class StrategyError(AtomSetsError, RuntimeError):
    """A tf.distribute strategy that cannot be set up in this process."""


class OutputPathError(AtomSetsError, ValueError):
    """An output path the command cannot write, e.g. one without the required suffix."""


class PlotsUnavailableError(MissingExtraError):
    """A plot asked for without matplotlib (the ``plot`` extra: ``pip install "atomsets-tf[plot]"``)."""


class RunLockedError(AtomSetsError, RuntimeError):
    """An output folder that another running process holds (see :func:`~atomsets_tf.utils.io.output_lock`)."""


class RunSettingsError(AtomSetsError, ValueError):
    """An output folder that holds a run made with other settings (resuming or reusing it would mix two runs)."""


class PreparedDatasetError(AtomSetsError, ValueError):
    """A prepared dataset (``atomsets_tf.data.prepared_format``) that is missing, garbled, foreign, or incompatible."""


class CorruptShardError(PreparedDatasetError):
    """A shard of a prepared dataset whose bytes do not match its manifest (corrupt or truncated)."""


class RecordSchemaError(PreparedDatasetError):
    """A record (or a schema) that does not follow its :class:`~atomsets_tf.data.records.RecordSchema`."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM, after saving what a rerun resumes from.

    A ``KeyboardInterrupt`` (not an input error); ``signum`` is the signal, so the
    command line exits with ``128 + signum``.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "interrupted"


class SmallDataWarning(UserWarning):
    """A number that rests on too few entries: a validation part, or an ensemble's std rescale factor."""
