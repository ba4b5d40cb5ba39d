# Two commands: `make demo` (the offline showcase) and `make test` (the whole test suite).
# Both create .venv from requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint notebooks clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m minidiff demo --out out

# One pytest-xdist worker per core (tests/conftest.py gives each worker cores / workers torch threads);
# worksteal rebalances the long notebook tests. `pytest` alone (no -n) runs in one process, as before.
PYTEST := $(PY) -m pytest -n auto --dist worksteal

test: lint
	$(PYTEST)

test-fast: lint
	$(PYTEST) -m "not slow"

# ruff, and the layers of docs/architecture.md (import-linter's contract in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check minidiff tests benchmarks notebooks homework
	$(VENV)/bin/lint-imports

notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/[0-9]*.py

clean:
	rm -rf out .pytest_cache
