"""Running a submission's tests in a child process that may hang, crash, print or exit, and never taking the grader
down with it.

`run_tests` runs pytest with `minidiff.homework.plugin` in a child process, in a scratch folder holding the
submission and the tests, and follows the plugin's event file. A test that outlives its limit is first interrupted
by the plugin's alarm; if the child does not answer (stuck in C code, or it ended the process), the grader kills
it, marks the running test failed with the reason, and starts a new child without the tests already finished.

Children are forked from a multiprocessing fork server that has imported torch and pytest once (`CONTEXT`), so a
submission costs its tests' time, not an interpreter start and a torch import (about 2 s each on the project's
CPU); each child is still a fresh process that shares nothing with the grader or with other submissions.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

GRACE_S = 10.0  # the alarm's chance to fire before the child is killed
COLLECT_S = 120.0  # the fork server's first start (importing torch) and collecting the tests
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["torch", "torch._dynamo", "torch.func", "pytest", "minidiff.homework.plugin", *(
    f"minidiff.{m}" for m in (
    "schedule", "gaussian", "elbo", "samplers", "guidance", "inversion", "null_text", "edict", "p2p", "noise_space",
    "hspace", "oracles", "nn.autoencoder"))])  # what the assignments' tests import: loaded once, not per child


def read_events(path: Path) -> list[dict]:
    """The plugin's events so far (a half-written last line is left for the next read)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def pytest_args(folder: Path, done: list[str]) -> list[str]:
    """pytest on the scratch folder with the plugin, quiet, without the finished tests."""
    args = ["-q", "-p", "minidiff.homework.plugin", "-p", "no:cacheprovider", "--rootdir", str(folder),
            "-o", "addopts=", str(folder)]
    return args + [f"--deselect={d}" for d in done]


def child(folder: Path, done: list[str], env: dict) -> None:
    """The child process: output to stdout.txt in `folder` (never the grader's terminal), one thread, pytest."""
    os.environ.update(env)
    os.chdir(folder)
    fd = os.open(folder / "stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdin = open(os.devnull)
    import pytest
    import torch

    torch.set_num_threads(1)
    sys.exit(int(pytest.main(pytest_args(folder, done))))  # a normal exit: finalizers release what tests created


def watch(proc, events: Path, test_limit: float) -> str | None:
    """Wait for the child; kill it if one test runs past test_limit + GRACE_S. Returns why it was killed."""
    started = None
    while proc.is_alive():
        proc.join(0.05)
        ev = read_events(events)
        running = ev[-1]["id"] if ev and ev[-1]["event"] == "start" else None
        started = (running, started[1] if started and started[0] == running else time.monotonic())
        if running and time.monotonic() - started[1] > test_limit + GRACE_S:
            proc.kill()
            proc.join()
            return f"killed after {test_limit + GRACE_S:.0f} s without finishing (an endless loop?)"
        if not running and time.monotonic() - started[1] > COLLECT_S:
            proc.kill()
            proc.join()
            return f"killed: no test started within {COLLECT_S:.0f} s (a hang at import?)"
    return None


def run_child(folder: Path, events: Path, done: list[str], test_limit: float) -> str | None:
    """One child run; why it was killed, if it was."""
    env = {"MINIDIFF_HW_RESULTS": str(events), "MINIDIFF_HW_TEST_LIMIT": str(test_limit),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = CONTEXT.Process(target=child, args=(folder, done, env), daemon=True)
    proc.start()
    return watch(proc, events, test_limit)


def run_tests(folder: Path, test_limit: float = 30.0, max_restarts: int = 20) -> dict:
    """Every test's outcome: {"tests": [info...], "results": {id: (passed, message)}, "collect_error": str|None}."""
    events_path = folder / "events.jsonl"
    results: dict[str, tuple[bool, str]] = {}
    for _ in range(max_restarts):
        killed = run_child(folder, events_path, sorted(results), test_limit)
        events = read_events(events_path)
        results.update({e["id"]: (e["passed"], e["message"]) for e in events if e["event"] == "end"})
        started = [e["id"] for e in events if e["event"] == "start"]
        if not started or started[-1] in results:
            break  # finished (or never started a test: a collection error)
        results[started[-1]] = (False, killed or "the submission ended the grading process during this test")
    tests = next((e["tests"] for e in events if e["event"] == "collected"), [])
    error = next((e["message"] for e in events if e["event"] == "collect_error"), None)
    if not tests and error is None:
        error = killed or "no tests were collected (the submission could not be imported?)"
    return {"tests": tests, "results": results, "collect_error": error}
