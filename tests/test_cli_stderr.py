"""The CLI's stderr carries only its own progress and its ``Error:`` line, not TensorFlow's start-up notes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from atomsets_tf import cli
from atomsets_tf.utils.startup import held_back_stderr


def test_bad_input_leaves_exactly_one_error_line(tmp_path):
    # TF_CPP_MIN_LOG_LEVEL unset, as on a user's shell: TensorFlow's C++ notes would otherwise print.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "atomsets_tf.cli", "predict", "atomsets-v0-steels",
                        str(tmp_path / "missing.csv"), "-o", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"Error: no such file or folder: {tmp_path / 'missing.csv'}"], r.stderr


def test_help_imports_no_tensorflow():
    code = ("import sys; from atomsets_tf.cli import main; rc = main(['fit', '--help']); "
            "assert 'tensorflow' not in sys.modules, 'imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_every_command_but_models_is_known_to_need_tensorflow():
    assert set(cli.cli.commands) - cli.tensorflow_commands() == {"models"}
    code = ("import sys; from atomsets_tf.cli import main; rc = main(['models']); "
            "assert 'tensorflow' not in sys.modules, 'imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_held_back_output_is_replayed_when_the_block_fails(capfd):
    with pytest.raises(RuntimeError), held_back_stderr():
        os.write(2, b"native note\n")
        raise RuntimeError("import failed")
    assert "native note" in capfd.readouterr().err


def test_held_back_output_is_dropped_on_success(capfd):
    with held_back_stderr():
        os.write(2, b"native note\n")
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"
