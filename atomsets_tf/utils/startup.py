"""Importing TensorFlow without its C++ start-up notes on the user's terminal.

TensorFlow's C++ runtime writes start-up notes ("All log messages before
absl::InitializeLog() ...", oneDNN's "custom operations are on", the CPU
feature guard) straight to file descriptor 2 while ``import tensorflow`` runs,
before ``TF_CPP_MIN_LOG_LEVEL`` takes effect (TensorFlow 2.21). They bypass
``sys.stderr``, so Python-level redirection cannot catch them.
:func:`import_tensorflow_quietly` points descriptor 2 at a temporary file for
the length of the import and puts it back afterwards. What was held back is
dropped when the import succeeds and replayed when it fails, so a broken
TensorFlow still explains itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def held_back_stderr() -> Iterator[None]:
    """Send what is written to file descriptor 2 to a temporary file while the block runs.

    On an exception the held-back bytes are written to the restored stderr before it propagates.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and Keras) with the C++ start-up notes held back; a no-op once imported."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with held_back_stderr():
        # Imported here, not at module level: the CLI's --help needs no TensorFlow.
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
