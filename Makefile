# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint setup setup-test bench

# The runtime only (what `make demo` needs): the test tools come with `make test` (setup-test below).
$(BIN)/autofix: pyproject.toml
	@echo "==> creating the virtualenv in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "==> installing the runtime (about 530 MB, 30-70 s the first time)..."
	$(BIN)/pip install -q -e .
	touch $(BIN)/autofix

setup: $(BIN)/autofix

demo: setup
	$(BIN)/autofix demo

lint: setup-test  # ruff, mypy and import-linter are test tools
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy app

# The tests also need Alertmanager (Debian package, installed when missing and root) and the full mlflow
# package for `mlflow server` (extra `e2e`, ~820 MB): only `make test` pays for them.
$(VENV)/.test-deps: $(BIN)/autofix
	./scripts/system-deps.sh
	@echo "==> installing the test tools and the full mlflow (about 1 GB more, a minute or more the first time)..."
	$(BIN)/pip install -q -e '.[test,e2e]'
	touch $(VENV)/.test-deps

setup-test: $(VENV)/.test-deps

# Two workers (pytest-xdist, work stealing: pyproject addopts): most tests wait on subprocesses and servers; 2
# matches CI's cores. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2

test: setup-test
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

bench: setup
	$(BIN)/python benchmarks/run_all.py
