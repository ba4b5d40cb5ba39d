"""Grading: a submission's score per question, a printed table, a JSON report with feedback, and batch CSV.

A question's score is the sum of the points of its passing tests (public and hidden). Before any test runs, the
submission is parsed and its imports checked against the assignment's `allowed_imports` (the library's own
reference implementations are not allowed: a submission that imports them scores zero, with the reason).
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
import tempfile
from pathlib import Path

from .runner import run_tests
from .source import ROOT, folder, metadata


def submission_file(name: str, submission: Path) -> Path:
    """The submission's `<name>.py`: the path itself, or that file inside a folder."""
    path = submission / f"{name}.py" if submission.is_dir() else submission
    if not path.is_file():
        raise ValueError(f"expected a file {name}.py or a folder holding one, got {submission}")
    return path


def import_problem(source: str, allowed: list[str]) -> str | None:
    """Why the source cannot be graded (a syntax error, a forbidden import), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return f"the submission does not parse: {e.msg} (line {e.lineno})"
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for n in names:
            if not any(n == a or n.startswith(a + ".") for a in allowed):
                return f"line {node.lineno}: import of {n!r} is not allowed (allowed: {', '.join(allowed)})"
    return None


def scratch(name: str, source: str, root: Path) -> Path:
    """A temporary folder with the submission as <name>.py beside the public and hidden tests and conftest."""
    tmp = Path(tempfile.mkdtemp(prefix=f"grade-{name}-"))
    (tmp / f"{name}.py").write_text(source)
    for f in ("test_public.py", "test_hidden.py", "conftest.py"):
        if (folder(name, root) / f).exists():
            shutil.copy(folder(name, root) / f, tmp / f)
    return tmp


def score(meta: dict, run: dict, problem: str | None) -> dict:
    """The report: per question its score, maximum and every test's outcome and message."""
    questions = []
    for qid, q in meta["questions"].items():
        tests = [t for t in run["tests"] if t["question"] == qid]
        rows = [{**t, "passed": run["results"].get(t["id"], (False, ""))[0],
                 "message": run["results"].get(t["id"], (False, "did not run"))[1]} for t in tests]
        questions.append({"id": qid, "title": q["title"], "max": q["points"],
                          "score": sum(r["points"] for r in rows if r["passed"]), "tests": rows,
                          "error": problem or run.get("collect_error")})
    total = sum(q["score"] for q in questions)
    return {"questions": questions, "score": total, "max": sum(q["max"] for q in questions)}


def grade(name: str, submission: str | Path, root: Path = ROOT) -> dict:
    """Grade one submission of assignment `name`; returns the report (see `score`)."""
    meta, path = metadata(name, root), submission_file(name, Path(submission))
    source = path.read_text()
    problem = import_problem(source, meta["allowed_imports"])
    run = {"tests": [], "results": {}, "collect_error": None}
    if problem is None:
        tmp = scratch(name, source, root)
        try:
            run = run_tests(tmp, meta.get("test_time_limit_s", 30.0))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"assignment": name, "submission": str(path), **score(meta, run, problem)}


def print_report(report: dict) -> None:
    """The per-question score table and the first failure message of each question."""
    print(f"\n{report['assignment']}: {report['submission']}\n")
    print("| question | score | max | feedback |\n|---|---|---|---|")
    for q in report["questions"]:
        failed = [f"{t['id'].split('::')[-1]}: {t['message']}" for t in q["tests"] if not t["passed"]]
        feedback = q["error"] or (failed[0] if failed else "all tests pass")
        print(f"| {q['id']} {q['title']} | {q['score']:g} | {q['max']:g} | {feedback.replace('|', '/')} |")
    print(f"| **total** | **{report['score']:g}** | **{report['max']:g}** | |")


def grade_folder(name: str, submissions: Path, csv_path: Path, root: Path = ROOT) -> list[dict]:
    """Batch mode: grade every entry of `submissions` (files <x>.py or folders), one CSV row each, a JSON report
    beside the CSV per submission."""
    reports = []
    for sub in sorted(p for p in submissions.iterdir() if p.is_dir() or p.suffix == ".py"):
        try:
            r = grade(name, sub, root)
        except ValueError as e:  # a folder without <name>.py
            r = {"assignment": name, "submission": str(sub), "questions": [], "score": 0, "max": 0, "error": str(e)}
        r["student"] = sub.stem
        (csv_path.parent / f"{sub.stem}.json").write_text(json.dumps(r, indent=1))
        reports.append(r)
    ids = list(metadata(name, root)["questions"])
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", *ids, "total", "max"])
        for r in reports:
            got = {q["id"]: q["score"] for q in r["questions"]}
            w.writerow([r["student"], *(got.get(i, 0) for i in ids), r["score"], r["max"]])
    return reports
