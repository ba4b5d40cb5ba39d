"""The pytest plugin the grader's child process loads (`-p minidiff.homework.plugin`).

It writes one JSON line per event to $MINIDIFF_HW_RESULTS as it happens, so that the grader knows which test was
running if the process dies or hangs: `collected` (every test's id, question, points and public/hidden), `start`,
`end` (outcome and a one-line message), `collect_error`. Each test runs under an alarm of $MINIDIFF_HW_TEST_LIMIT
seconds, and sockets are disabled (no network while grading).
"""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest


class NetworkDisabled(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network access is disabled while grading")


class TestTimeout(Exception):
    pass


def record(event: dict) -> None:
    """Append one event line to the results file and flush it to disk at once."""
    with open(os.environ["MINIDIFF_HW_RESULTS"], "a") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "question(id, points): the question a test grades and its points")
    socket.socket = NetworkDisabled


def test_info(item) -> dict:
    """id, question, points and whether the test is public, from its `question` marker and file."""
    m = item.get_closest_marker("question")
    if m is None:
        raise ValueError(f"{item.nodeid} has no @pytest.mark.question(id, points=...)")
    return {"id": item.nodeid, "question": m.args[0], "points": m.kwargs.get("points", 1),
            "public": item.fspath.basename == "test_public.py"}


def pytest_collection_modifyitems(session, config, items) -> None:
    record({"event": "collected", "tests": [test_info(i) for i in items]})


def pytest_collectreport(report) -> None:
    if report.failed:
        record({"event": "collect_error", "message": one_line(str(report.longrepr))})


def one_line(text: str, limit: int = 300) -> str:
    """The last informative line of a traceback ('E   ...' lines preferred), shortened."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    line = (errors or lines or ["failed"])[-1]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def alarm(signum, frame):
    raise TestTimeout(f"the test ran longer than {os.environ['MINIDIFF_HW_TEST_LIMIT']} s (an endless loop?)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, float(os.environ["MINIDIFF_HW_TEST_LIMIT"]))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def pytest_runtest_logstart(nodeid, location) -> None:
    record({"event": "start", "id": nodeid})


def failure(report) -> str:
    """One line saying why a test failed: pytest's crash message (the exception, or the assertion with the
    values), else the end of the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return one_line(text) if crash is None else " ".join(text.split())[:300]


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" or report.failed or report.skipped:
        message = "" if report.passed else failure(report)
        record({"event": "end", "id": report.nodeid, "passed": report.passed, "message": message})
