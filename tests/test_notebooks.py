"""The lecture notebooks run top to bottom in FAST mode, and follow the house rules.

Every `notebooks/[0-9]*.py` (a jupytext py:percent file) is executed in a fresh kernel of
this interpreter, in a temporary working directory. A cell that raises fails the test with
that cell's source and traceback (nbclient's CellExecutionError).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
LECTURES = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))
# The inline backend is headless (it renders with Agg) and still captures every figure as a
# display output, as in Jupyter. Setting it explicitly keeps a GUI MPLBACKEND of the caller out.
KERNEL_ENV = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks
# Notebooks that read CIFAR-10 / CelebA (directly or through `datasets.heldout`).
DATA_USE = re.compile(r"\bload_dataset\b|\bheldout\b|\bquality_table\b|\bautoencoder_table\b|\bmissing\(")
DATA_NOTEBOOKS = [p for p in LECTURES if DATA_USE.search(p.read_text())]


def first_code_cell(nb) -> "nbformat.NotebookNode":
    return next(cell for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", LECTURES, ids=[p.name for p in LECTURES])
def test_lecture_notebook_has_a_parameters_cell_setting_fast(path):
    """House rule: the first code cell is tagged `parameters` (papermill) and sets FAST = True for CI."""
    cell = first_code_cell(jupytext.read(path))
    assert "parameters" in cell.metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert re.search(r"^FAST\s*=\s*True\b", cell.source, re.M), f"{path.name}: first code cell must set FAST = True"


def from_first_data_cell(nb) -> "nbformat.NotebookNode":
    """The notebook's setup code cells (those before its first "## " section heading: parameters, imports) and
    every cell from its first cell that reads CIFAR-10 / CelebA (`DATA_USE`) to the end: what a missing data set
    can affect. Cells before that read no data and run in the full test."""
    heading = next(i for i, c in enumerate(nb.cells)
                   if c.cell_type == "markdown" and re.search(r"^## ", c.source, re.M))
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and DATA_USE.search(c.source))
    nb.cells = [c for i, c in enumerate(nb.cells) if (i < heading and c.cell_type == "code") or i >= first]
    return nb


def execute(path: Path, workdir: Path, env: dict[str, str], data_cells_only: bool = False) -> "nbformat.NotebookNode":
    """Run the notebook in FAST mode in a fresh kernel (only `from_first_data_cell` with data_cells_only);
    a cell that raises fails the test."""
    nb = jupytext.read(path)
    assert re.search(r"^FAST\s*=\s*True\b", first_code_cell(nb).source, re.M)
    if data_cells_only:
        nb = from_first_data_cell(nb)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:  # its message holds the cell's source and traceback
        pytest.fail(f"{path.name}: {ANSI_ESCAPE.sub('', str(err))}", pytrace=False)
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", LECTURES, ids=[p.name for p in LECTURES])
def test_lecture_notebook_executes_in_fast_mode(path, tmp_path):
    execute(path, tmp_path, KERNEL_ENV)


def test_the_notebooks_that_read_cifar10_or_celeba_are_found():
    assert {"04_edict.py", "06_latent_diffusion.py"} <= {p.name for p in DATA_NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", DATA_NOTEBOOKS, ids=[p.name for p in DATA_NOTEBOOKS])
def test_notebook_without_cifar10_or_celeba_skips_those_sections_and_says_why(path, tmp_path):
    """A fresh clone: MINIDIFF_DATA is an empty folder and the ../shared/data lookup is off
    (MINIDIFF_NO_SHARED). The notebook still runs to the end, and prints which section it skips and why.
    Run from its first data-reading cell (after the setup cells): the cells before read no data, and the full
    notebook runs in `test_lecture_notebook_executes_in_fast_mode` (on a fresh clone, without the data)."""
    from minidiff.training import pretrained

    empty = tmp_path / "no_data"
    empty.mkdir()
    nb = execute(path, tmp_path, {**KERNEL_ENV, "MINIDIFF_DATA": str(empty), "MINIDIFF_NO_SHARED": "1"},
                 data_cells_only=True)
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream")
    assert re.search(r"skipping §\d", printed), f"{path.name} printed no skip notice:\n{printed[-2000:]}"
    if pretrained.available("cifar10") and pretrained.available("cifar10_ae"):  # else it skips for the checkpoints
        assert "data not found" in printed and str(empty) in printed, printed[-2000:]


def test_notebooks_never_install_packages():
    """No pip magics (percent-pip, bang-pip) in any notebook: dependencies belong in requirements.txt."""
    files = [*NOTEBOOK_DIR.rglob("*.py"), *NOTEBOOK_DIR.rglob("*.ipynb")]
    offenders = [str(p.relative_to(ROOT)) for p in files if re.search(r"[%!]\s*pip\b", p.read_text())]
    assert not offenders, f"notebooks that install packages: {offenders}"


def test_no_tracked_ipynb_has_outputs():
    """Outputs are never committed: a tracked .ipynb (if any) has no outputs and no execution counts."""
    try:
        listed = subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    dirty = []
    for name in (n for n in listed if n.endswith(".ipynb") and (ROOT / n).exists()):
        nb = nbformat.read(ROOT / name, as_version=4)
        if any(c.get("outputs") or c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code"):
            dirty.append(name)
    assert not dirty, f"tracked notebooks with outputs (clear them before committing): {dirty}"
