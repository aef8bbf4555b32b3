"""Tests marked ``isolated`` run in a Python process of their own, so that their memory goes back when they end.

A TensorFlow process keeps what it once allocated (graphs, kernels, malloc arenas), so one heavy test (the
62M-parameter CGAT step, a notebook-sized run) raises the whole suite's peak resident memory for good. Mark such
a test, or a module with ``pytestmark = pytest.mark.isolated``, and the suite's process runs every isolated test of
that module in one child ``python -m pytest`` (fixtures included: nothing heavy is set up in the parent), then
replays the child's own reports (pass, skip with its reason, failure with its traceback) as if it had run here.

The children run in the background, one at a time, from the start of the session, in the order of their modules,
while this process goes on with the other tests: on 2 cores the suite then uses both (a child is mostly one busy
thread tracing graphs, as is this process). An isolated test waits for its module's child, then replays its reports.
``ATOMSETS_TF_TEST_SERIAL=1`` runs each child when its first test is reached instead (e.g. to measure a child's memory
alone).

A child that dies (killed, out of memory) fails each of its tests that it did not report, with the end of its
output. ``conftest.py`` imports the hooks below; ``ATOMSETS_TF_TEST_CHILD`` tells a child where to write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from _pytest.reports import TestReport

#: Set in a child: the file where it writes its reports, one JSON object a line.
CHILD_ENV = "ATOMSETS_TF_TEST_CHILD"
#: Set to 1: run each child when its module's first isolated test is reached, not in the background.
SERIAL_ENV = "ATOMSETS_TF_TEST_SERIAL"
MARKER = "isolated"
#: The reports a child wrote, by node id, until the parent replays them.
_replies: dict[str, list[dict]] = {}
_config: list[pytest.Config] = []
#: Per module path, its isolated tests (known once collected), and an event set once its child's reports are all
#: in ``_replies``.
_group: dict[Path, list[pytest.Item]] = {}
_done: dict[Path, threading.Event] = {}
#: The child now running in the background, so that the end of the session can stop it.
_running: list[subprocess.Popen] = []
_stopping = threading.Event()


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


def _groups(items: list[pytest.Item]) -> dict[Path, list[pytest.Item]]:
    """The isolated tests by module, in the order of the modules' first isolated test."""
    groups: dict[Path, list[pytest.Item]] = {}
    for item in items:
        if _runs_in_child(item):
            groups.setdefault(item.path, []).append(item)
    return groups


def _run_child(group: list[pytest.Item]) -> None:
    """Run ``group`` (one module's isolated tests) in one child; keep its reports in ``_replies``."""
    config = group[0].config
    with tempfile.TemporaryDirectory(prefix="atomsets-tf-child-") as tmp:
        reports, output = Path(tmp) / "reports.jsonl", Path(tmp) / "output.txt"
        reports.touch()
        env = {**os.environ, CHILD_ENV: str(reports)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(i.nodeid for i in group)]
        with open(output, "w") as out:
            child = subprocess.Popen(command, cwd=config.rootpath, env=env, stdout=out, stderr=subprocess.STDOUT)
            _running.append(child)
            returncode = child.wait()
            _running.remove(child)
        for line in reports.read_text().splitlines():
            data = json.loads(line)
            _replies.setdefault(data["nodeid"], []).append(data)
        tail = output.read_text(errors="replace")[-4000:]
    for i in group:
        if not any(r["when"] == "teardown" for r in _replies.get(i.nodeid, [])):
            _replies.setdefault(i.nodeid, []).append(_crashed(i, returncode, tail))


def _run_children(groups: list[list[pytest.Item]]) -> None:
    """The background lane: each module's child in turn (a child's own failure is reported by its tests)."""
    for group in groups:
        try:
            if not _stopping.is_set():
                _run_child(group)
        finally:  # a lane that failed must not leave a test waiting: its tests then fail as not finished
            _done[group[0].path].set()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background lane once the tests are known (a child reads the same collection)."""
    if os.environ.get(CHILD_ENV) or session.config.option.collectonly:
        return
    groups = _groups(session.items)
    _group.update(groups)
    for path in groups:
        _done[path] = threading.Event()
    if groups and os.environ.get(SERIAL_ENV) != "1":
        threading.Thread(target=_run_children, args=(list(groups.values()),), daemon=True).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An interrupted or failed-fast session does not leave a child running."""
    _stopping.set()
    for child in list(_running):
        child.kill()


def _crashed(item: pytest.Item, returncode: int, tail: str) -> dict:
    report = TestReport(item.nodeid, item.location, {}, "failed",
                        f"the child process (exit {returncode}) did not finish this test:\n{tail}", "call")
    return item.config.hook.pytest_report_to_serializable(config=item.config, report=report)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if not _runs_in_child(item):
        return None
    if os.environ.get(SERIAL_ENV) == "1" and not _done[item.path].is_set():
        _run_child(_group[item.path])
        _done[item.path].set()
    _done[item.path].wait()
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for data in _replies.pop(item.nodeid, None) or [_crashed(item, -1, "its child did not start")]:
        report = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
        if isinstance(report.longrepr, list):  # a skip's (file, line, reason), a list after JSON
            report.longrepr = tuple(report.longrepr)
        item.ihook.pytest_runtest_logreport(report=report)
    # What runtestprotocol's teardown does: drop the fixtures (of this module, say) that the next test does not use.
    item.session._setupstate.teardown_exact(nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
