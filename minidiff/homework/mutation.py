"""The mutation check: realistic student mistakes (an assignment's instructor-only mutants.py) applied to the
reference solution, each graded; a good test set takes points off exactly the questions a mistake breaks, and the
table says whether the public tests already catch it or only the hidden ones do."""

from __future__ import annotations

import os
import runpy
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .grade import grade
from .source import ROOT, folder


def mutants(name: str, root: Path = ROOT) -> list[tuple[str, str, str, set[str]]]:
    """(description, text of the reference, its replacement, the questions it must break) for each mutant."""
    return runpy.run_path(str(folder(name, root) / "mutants.py"))["MUTANTS"]


def mutate(source: str, old: str, new: str) -> str:
    """source with the one occurrence of `old` replaced by `new` (an error unless there is exactly one)."""
    if source.count(old) != 1:
        raise ValueError(f"a mutant's text must occur exactly once in the reference, found {source.count(old)}: "
                         f"{old!r}")
    return source.replace(old, new)


def mutant_row(name: str, description: str, source: str, expected: set[str], root: Path) -> dict:
    """Grade one mutated source: the questions that lost points and which tests caught it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.py"
        path.write_text(source)
        report = grade(name, path, root)
    lost = {q["id"] for q in report["questions"] if q["score"] < q["max"]}
    failed = [t for q in report["questions"] for t in q["tests"] if not t["passed"]]
    return {"mutant": description, "expected": sorted(expected), "lost": sorted(lost),
            "public": any(t["public"] for t in failed), "hidden": any(not t["public"] for t in failed)}


def mutation_rows(name: str, root: Path = ROOT, workers: int | None = None) -> list[dict]:
    """Every mutant of assignment `name` graded (`mutant_row`), `workers` at a time (default: one per core, at
    most 4; each grading is its own one-thread child process, so they run side by side)."""
    reference = (folder(name, root) / f"{name}.py").read_text()
    jobs = [(d, mutate(reference, old, new), expected) for d, old, new, expected in mutants(name, root)]
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda j: mutant_row(name, j[0], j[1], j[2], root), jobs))


def print_mutation_table(name: str, rows: list[dict]) -> None:
    """The mutation table and the fractions caught by the public tests and by the public and hidden ones."""
    print(f"\n{name}: mutants\n\n| mutant | should break | lost points on | caught by public | caught by hidden |"
          "\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mutant']} | {', '.join(r['expected'])} | {', '.join(r['lost']) or '-'} | "
              f"{'yes' if r['public'] else 'no'} | {'yes' if r['hidden'] else 'no'} |")
    n = len(rows)
    print(f"\ncaught by the public tests: {sum(r['public'] for r in rows)}/{n}; by public or hidden: "
          f"{sum(bool(r['lost']) for r in rows)}/{n}; points lost exactly where expected: "
          f"{sum(r['lost'] == r['expected'] for r in rows)}/{n}")
