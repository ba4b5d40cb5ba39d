"""The assignments' files: finding them, their metadata, and turning a reference solution into the release."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "homework"  # the repository's homework/ folder
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("{name}: replace this line with your solution")'
INSTRUCTOR_FILES = ("test_hidden.py", "mutants.py")  # never in a release
RELEASED = ("{name}.py", "{name}_notebook.py", "test_public.py", "conftest.py", "assignment.json")


def assignments(root: Path = ROOT) -> list[str]:
    """The names of the assignments (folders with an assignment.json), in order."""
    return sorted(p.parent.name for p in root.glob("*/assignment.json"))


def folder(name: str, root: Path = ROOT) -> Path:
    """The folder of assignment `name`, or a clear error naming the ones that exist."""
    path = root / name
    if not (path / "assignment.json").is_file():
        raise ValueError(f"no assignment {name!r}; expected one of {', '.join(assignments(root)) or 'none'}")
    return path


def metadata(name: str, root: Path = ROOT) -> dict:
    """assignment.json: title, questions {id: {"title", "points"}}, allowed_imports, test_time_limit_s."""
    return json.loads((folder(name, root) / "assignment.json").read_text())


def strip_solutions(text: str, names: dict[int, str] | None = None) -> str:
    """The release of a source: every block between BEGIN and END lines (inclusive) replaced by one STUB line at
    the BEGIN line's indent, naming names[line of BEGIN] (the function it sits in). Unbalanced markers are an
    error."""
    out, inside, indent = [], False, ""
    for i, line in enumerate(text.splitlines(keepends=True), 1):
        mark = line.strip()
        if mark == BEGIN:
            if inside:
                raise ValueError(f"line {i}: {BEGIN} inside a solution block")
            inside, indent = True, line[:len(line) - len(line.lstrip())]
            out.append(indent + STUB.format(name=(names or {}).get(i, "this question")) + "\n")
        elif mark == END:
            if not inside:
                raise ValueError(f"line {i}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "".join(out)


def solution_names(text: str) -> dict[int, str]:
    """{line of each BEGIN marker: the name of the function it sits in} of a source."""
    tree, lines = ast.parse(text), text.splitlines()
    begins = [i + 1 for i, line in enumerate(lines) if line.strip() == BEGIN]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            found.update({b: node.name for b in begins if node.lineno < b <= node.end_lineno})
    return found


def release_source(text: str) -> str:
    """`strip_solutions` with each stub naming its function."""
    return strip_solutions(text, solution_names(text))


def release(name: str, out: str | Path, root: Path = ROOT) -> list[Path]:
    """Write the student release of assignment `name` into the new or empty folder `out`: the question file with
    its solutions stripped (`release_source`), the notebook, the public tests, conftest.py and assignment.json.
    Returns the files written; refuses a folder that already holds files (nothing is overwritten)."""
    src, out = folder(name, root), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new or empty folder for the release")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pattern in RELEASED:
        f = src / pattern.format(name=name)
        if f.exists():
            text = f.read_text()
            (out / f.name).write_text(release_source(text) if f.name == f"{name}.py" else text)
            written.append(out / f.name)
    return written
