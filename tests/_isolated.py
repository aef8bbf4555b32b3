"""Tests marked ``isolated`` run in a Python process of their own, so that their memory goes back when they end.

A TensorFlow process keeps what it once allocated (graphs, kernels, malloc arenas), so one heavy test (the
62M-parameter CGAT step, a notebook-sized run) raises the whole suite's peak resident memory for good. Mark such
a test, or a module with ``pytestmark = pytest.mark.isolated``, and the suite's process runs every isolated test of
that module in one child ``python -m pytest`` (fixtures included: nothing heavy is set up in the parent), then
replays the child's own reports (pass, skip with its reason, failure with its traceback) as if it had run here.

A child that dies (killed, out of memory) fails each of its tests that it did not report, with the end of its
output. ``conftest.py`` imports the hooks below; ``ATOMSETS_TF_TEST_CHILD`` tells a child where to write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _pytest.reports import TestReport

#: Set in a child: the file where it writes its reports, one JSON object a line.
CHILD_ENV = "ATOMSETS_TF_TEST_CHILD"
MARKER = "isolated"
#: The reports a child wrote, by node id, until the parent replays them.
_replies: dict[str, list[dict]] = {}
_config: list[pytest.Config] = []


def _runs_in_child(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None and not os.environ.get(CHILD_ENV)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: runs in a child Python process of its own (heavy on memory)")
    _config.append(config)


def pytest_runtest_logreport(report: TestReport) -> None:
    """In a child: append each report to the parent's file."""
    path = os.environ.get(CHILD_ENV)
    if path and _config:
        data = _config[-1].hook.pytest_report_to_serializable(config=_config[-1], report=report)
        with open(path, "a") as f:
            f.write(json.dumps(data) + "\n")


def _run_child(item: pytest.Item) -> None:
    """Run every isolated test of ``item``'s module in one child; keep its reports in ``_replies``."""
    group = [i for i in item.session.items if i.path == item.path and _runs_in_child(i)]
    with tempfile.TemporaryDirectory(prefix="atomsets-tf-child-") as tmp:
        reports = Path(tmp) / "reports.jsonl"
        reports.touch()
        env = {**os.environ, CHILD_ENV: str(reports)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(i.nodeid for i in group)]
        done = subprocess.run(command, cwd=item.config.rootpath, env=env, capture_output=True, text=True)
        for line in reports.read_text().splitlines():
            data = json.loads(line)
            _replies.setdefault(data["nodeid"], []).append(data)
    tail = (done.stdout + done.stderr)[-4000:]
    for i in group:
        if not any(r["when"] == "teardown" for r in _replies.get(i.nodeid, [])):
            _replies.setdefault(i.nodeid, []).append(_crashed(i, done.returncode, tail))


def _crashed(item: pytest.Item, returncode: int, tail: str) -> dict:
    report = TestReport(item.nodeid, item.location, {}, "failed",
                        f"the child process (exit {returncode}) did not finish this test:\n{tail}", "call")
    return item.config.hook.pytest_report_to_serializable(config=item.config, report=report)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if not _runs_in_child(item):
        return None
    if item.nodeid not in _replies:
        _run_child(item)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for data in _replies.pop(item.nodeid):
        report = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
        if isinstance(report.longrepr, list):  # a skip's (file, line, reason), a list after JSON
            report.longrepr = tuple(report.longrepr)
        item.ihook.pytest_runtest_logreport(report=report)
    # What runtestprotocol's teardown does: drop the fixtures (of this module, say) that the next test does not use.
    item.session._setupstate.teardown_exact(nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
