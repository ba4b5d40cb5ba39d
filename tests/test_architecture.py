"""The architecture (docs/architecture.md) holds: short functions, no private imports across modules, every module
in the file map and in the import-linter layers, and both linters pass.

`python -m tests.test_architecture --write-map` rewrites the file map of docs/architecture.md from the tree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minidiff"
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 40  # a function, from its `def` line to its last line, docstring included
MAP_START, MAP_END = "<!-- file map: start -->", "<!-- file map: end -->"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_40_lines():
    long = [f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)" for p in modules() for name, line, n in functions(p)
            if n > MAX_LINES]
    assert not long, "split these functions (STYLE: one screen each):\n" + "\n".join(long)


def test_nothing_imports_another_modules_private_names():
    """`from X import _name` across modules couples them through what X may change freely; make it public."""
    found = []
    for path in [*modules(), *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "notebooks").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("minidiff")):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and a.name != "__version__"]
    assert not found, found


def test_every_top_level_module_is_in_the_maths_layer_of_the_import_contract():
    """A new top-level module must say where it sits: the last layer of the contract in pyproject.toml."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    maths = {m.strip() for m in contract["layers"][-1].split(":")}
    top = {f"minidiff.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "cli")}
    upper = {m.strip() for layer in contract["layers"][:-1] for m in layer.split("|")}
    top |= {f"minidiff.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")} - upper  # method packages
    assert top == maths, {"missing from the contract": top - maths, "not a module": maths - top}


def file_map() -> str:
    """The markdown file map: every module with its line count and its docstring's first paragraph (shortened)."""
    rows = ["| file | lines | what |", "|---|---|---|"]
    for p in modules():
        doc = (ast.get_docstring(ast.parse(p.read_text())) or "").strip().split("\n\n")[0]
        what = " ".join(doc.split()).replace("|", "/")
        what = what if len(what) <= 150 else what[:what.rfind(" ", 0, 147)] + " ..."
        rows.append(f"| `{p.relative_to(ROOT)}` | {len(p.read_text().splitlines())} | {what} |")
    return "\n".join(rows)


def test_the_file_map_lists_every_module_and_its_size():
    """docs/architecture.md's file map names every module, and no module that is gone; line counts within 20%
    (regenerate with `python -m tests.test_architecture --write-map`)."""
    text = DOC.read_text()
    table = text[text.index(MAP_START):text.index(MAP_END)]
    listed = dict(re.findall(r"\| `(minidiff/[^`]+)` \| (\d+) \|", table))
    actual = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules()}
    assert set(listed) == set(actual), {"missing": set(actual) - set(listed), "gone": set(listed) - set(actual)}
    stale = {f: (int(n), actual[f]) for f, n in listed.items() if abs(int(n) - actual[f]) > max(10, 0.2 * actual[f])}
    assert not stale, f"line counts changed (listed, actual): {stale}; python -m tests.test_architecture --write-map"


def test_the_import_contracts_and_ruff_pass():
    """The layers of docs/architecture.md, as import-linter checks them, and the style rules of ruff."""
    bin_dir = Path(sys.executable).parent
    for cmd in ([str(bin_dir / "lint-imports")], [str(bin_dir / "ruff"), "check", "minidiff", "tests", "benchmarks",
                                                  "notebooks"]):
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


if __name__ == "__main__" and "--write-map" in sys.argv:
    text = DOC.read_text()
    start, end = text.index(MAP_START) + len(MAP_START), text.index(MAP_END)
    DOC.write_text(text[:start] + "\n" + file_map() + "\n" + text[end:])
    print(f"wrote the file map of {DOC.relative_to(ROOT)}")
