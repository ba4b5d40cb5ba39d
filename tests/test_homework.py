"""The homework machinery (minidiff.homework): reference solutions score full marks, the release scores zero and
holds no solution or hidden test, every instructor's mutant loses points on exactly the questions it breaks, and a
submission that hangs, crashes, exits or prints is scored without taking the grader down."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from minidiff.homework.grade import grade, import_problem
from minidiff.homework.mutation import mutate, mutation_rows, print_mutation_table
from minidiff.homework.source import BEGIN, END, ROOT, assignments, folder, metadata, release, strip_solutions

ASSIGNMENTS = assignments()


def solution_lines(text: str) -> list[str]:
    """The stripped lines inside solution blocks."""
    out, inside = [], False
    for line in text.splitlines():
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif inside and line.strip():
            out.append(line.strip())
    return out


def test_strip_solutions_keeps_the_indent_and_refuses_unbalanced_markers():
    text = f"def f(x):\n    '''doc'''\n    {BEGIN}\n    return x + 1\n    {END}\n"
    assert strip_solutions(text, {3: "f"}) == ("def f(x):\n    '''doc'''\n    raise NotImplementedError(\"f: replace "
                                               "this line with your solution\")\n")
    for bad in (f"{BEGIN}\nx\n", f"x\n{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError, match="SOLUTION"):
            strip_solutions(bad)


def test_the_import_check_names_the_forbidden_module():
    assert import_problem("import torch\nfrom minidiff.schedule import Schedule\n", ["torch", "minidiff.schedule"]) \
        is None
    assert "minidiff.gaussian" in import_problem("from minidiff.gaussian import q_sample\n", ["minidiff.schedule"])
    assert "does not parse" in import_problem("def f(:\n", ["torch"])


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_question_has_tests_whose_points_add_up(name):
    meta = metadata(name)
    report = grade(name, folder(name) / f"{name}.py")
    for q in report["questions"]:
        assert q["tests"] and sum(t["points"] for t in q["tests"]) == meta["questions"][q["id"]]["points"], q["id"]
        assert any(t["public"] for t in q["tests"]) and any(not t["public"] for t in q["tests"]), q["id"]
    assert report["score"] == report["max"], [(t["id"], t["message"]) for q in report["questions"]
                                              for t in q["tests"] if not t["passed"]]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_release_scores_zero_runs_its_public_tests_and_holds_no_solution(name, tmp_path):
    files = release(name, tmp_path / "release")
    names = {f.name for f in files}
    assert f"{name}.py" in names and "test_public.py" in names
    assert not names & {"test_hidden.py", "mutants.py"}
    source = (folder(name) / f"{name}.py").read_text()
    released = "\n".join(f.read_text() for f in files)
    assert BEGIN not in released and END not in released
    provided = strip_solutions(source)  # code given to students may repeat a solution line (e.g. a provided step)
    leaked = [line for line in solution_lines(source) if len(line) > 12 and line in released and line not in provided]
    assert not leaked, leaked
    report = grade(name, tmp_path / "release")
    assert report["score"] == 0 and all(q["score"] == 0 for q in report["questions"])
    assert all("NotImplementedError" in t["message"] for q in report["questions"] for t in q["tests"])
    with pytest.raises(ValueError, match="not empty"):
        release(name, tmp_path / "release")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_mutant_loses_points_on_exactly_the_questions_it_breaks(name, capsys):
    rows = mutation_rows(name)
    assert len(rows) >= 5
    with capsys.disabled():
        print_mutation_table(name, rows)
    assert [r["lost"] for r in rows] == [r["expected"] for r in rows]


def test_mutate_needs_exactly_one_occurrence():
    assert mutate("a + b", "+", "-") == "a - b"
    with pytest.raises(ValueError, match="exactly once"):
        mutate("a + b + c", "+", "-")


HOSTILE = '''
import torch
print("x" * 100000)


def q_sample(sched, x0, t, eps):
    while True:
        pass


def q_posterior(sched, x0, x_t, t):
    __import__("os")._exit(3)


def posterior_mean_from_eps(sched, x_t, t, eps):
    raise SystemExit(1)


def lambda_t(sched, sigma2):
    __import__("signal").signal(__import__("signal").SIGALRM, __import__("signal").SIG_IGN)
    while True:
        pass


def L_T(sched, x0):
    ab = sched.alpha_bar[sched.T].to(x0.dtype)
    print("debugging output", ab)
    return (0.5 * ((1 - ab) + ab * x0 ** 2 - 1 - torch.log(1 - ab))).flatten(1).sum(1)
'''


LIMIT_S = 3  # per-test limit of the hostile grading: Q5's right answers must finish within it on a loaded machine
# (1 s failed Q5 once with a benchmark and the two test workers sharing the two cores)


def test_a_hostile_submission_is_scored_question_by_question_without_hanging_the_grader(tmp_path, monkeypatch):
    """Q1 loops (the alarm stops it), Q2 ends the process, Q3 raises SystemExit, Q4 loops with the alarm ignored
    (the grader kills it), Q5 is right and prints: full marks on Q5 only."""
    import minidiff.homework.runner as runner

    monkeypatch.setattr(runner, "GRACE_S", 1.0)
    meta = metadata("hw1")
    (tmp_path / "hw1.py").write_text(HOSTILE)
    limited = tmp_path / "root"
    (limited / "hw1").mkdir(parents=True)
    for f in folder("hw1").iterdir():
        if f.is_file():
            text = f.read_text()
            if f.name == "assignment.json":
                text = json.dumps({**meta, "test_time_limit_s": LIMIT_S})
            (limited / "hw1" / f.name).write_text(text)
    report = grade("hw1", tmp_path / "hw1.py", limited)
    scores = {q["id"]: q["score"] for q in report["questions"]}
    assert scores == {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": meta["questions"]["q5"]["points"]}
    messages = {q["id"]: " ".join(t["message"] for t in q["tests"]) for q in report["questions"]}
    assert f"longer than {LIMIT_S}" in messages["q1"] and "ended the grading process" in messages["q2"]
    assert "SystemExit" in messages["q3"] and "killed after" in messages["q4"]


def test_the_cli_grades_a_batch_into_one_csv(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / "hw1.py").write_text((ROOT / "hw1" / "hw1.py").read_text())
    (subs / "bob.py").write_text("from minidiff.gaussian import q_sample\n")
    out = subprocess.run([sys.executable, "-m", "minidiff", "homework", "grade", "hw1", str(subs), "--batch"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = (subs / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("submission,q1,") and rows[1].startswith("alice,3,4,") and rows[2].startswith("bob,0,")
    assert "not allowed" in json.loads((subs / "bob.json").read_text())["questions"][0]["error"]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_notebook_runs_on_the_reference_and_on_the_fresh_release(name, tmp_path):
    """The student's notebook executes top to bottom with the reference solution (its pictures drawn, the public
    tests passing) and then, in the same kernel (one kernel start and torch import per assignment), with the
    untouched release (each unfinished question noted, the public tests failing)."""
    from tests.test_notebooks import KERNEL_ENV, jupytext, nbclient, nbformat

    ref = tmp_path / "ref"
    ref.mkdir()
    for f in folder(name).iterdir():
        if f.is_file():
            (ref / f.name).write_text(f.read_text())
    release(name, tmp_path / "release")
    first, second = (jupytext.read(d / f"{name}_notebook.py") for d in (ref, tmp_path / "release"))
    rel = str(tmp_path / "release")
    switch = nbformat.v4.new_code_cell(  # the release's hwN and tests, not the reference's cached modules
        f"import os, sys\nos.chdir({rel!r})\nsys.path = [{rel!r}] + [p for p in sys.path if p not in ('', "
        f"{str(ref)!r})]\nfor m in ({name!r}, 'test_public', 'conftest'):\n    sys.modules.pop(m, None)")
    nb = nbformat.v4.new_notebook(cells=[*first.cells, switch, *second.cells], metadata=first.metadata)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ref)}}).execute(env=KERNEL_ENV)

    def text(cells) -> str:
        return "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.get("outputs", []))

    ref_text, release_text = text(nb.cells[:len(first.cells)]), text(nb.cells[len(first.cells) + 1:])
    assert " passed" in ref_text and " failed" not in ref_text and "not done yet" not in ref_text, ref_text[-2000:]
    assert " failed" in release_text and "not done yet" in release_text, release_text[-2000:]
