"""The ``isolated`` marker (``_isolated.py``): a heavy test runs in a child process, reported as if run here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROBE = '''
import os
import time
from pathlib import Path

import pytest

STARTED = Path(os.environ["PROBE_DIR"]) / "child_started"

@pytest.fixture(scope="module")
def of_the_module():
    return 1

def test_here_first(of_the_module):  # set up here: the module's fixture must be torn down before the next module
    assert not os.environ.get("ATOMSETS_TF_TEST_CHILD")
    deadline = time.monotonic() + 60  # the child runs meanwhile, in the background
    while not STARTED.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert STARTED.exists(), "the child did not run while this process went on"

@pytest.mark.isolated
def test_runs_in_a_child():
    assert os.environ.get("ATOMSETS_TF_TEST_CHILD")
    STARTED.touch()
    print("PID", os.getpid())

@pytest.mark.isolated
def test_skips_with_its_reason():
    pytest.skip("the reason")

@pytest.mark.isolated
@pytest.mark.parametrize("x", [1, 2])
def test_fails_with_its_traceback(x, tmp_path):
    assert x == 1, "two is not one"

@pytest.mark.isolated
def test_dies():  # the module's last test is isolated
    os._exit(3)
'''

HERE_TOO = '''
import os

def test_runs_here():
    assert not os.environ.get("ATOMSETS_TF_TEST_CHILD")
'''


def test_isolated_tests_run_in_a_child_and_report_as_if_run_here(tmp_path):
    (tmp_path / "_isolated.py").write_text((HERE / "_isolated.py").read_text())
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["_isolated"]\n')
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_here.py").write_text(HERE_TOO)
    r = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "test_probe.py",
                        "test_here.py"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                       env={**os.environ, "PROBE_DIR": str(tmp_path)})
    out = r.stdout
    assert r.returncode == 1, out
    assert "2 failed, 4 passed, 1 skipped" in out, out
    assert "not torn down properly" not in out, out
    assert "SKIPPED [1] test_probe.py:" in out and "the reason" in out, out
    assert "two is not one" in out and "assert 2 == 1" in out, out  # the child's own traceback
    assert "the child process (exit 3) did not finish this test" in out, out  # a dead child fails its test
