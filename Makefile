# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint setup setup-test bench

$(BIN)/autofix: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/autofix

setup: $(BIN)/autofix

demo: setup
	$(BIN)/autofix demo

lint: setup
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy app

# The tests also need Alertmanager (Debian package, installed when missing and root) and the full mlflow
# package for `mlflow server` (extra `e2e`, ~820 MB): only `make test` pays for them.
$(VENV)/.test-deps: $(BIN)/autofix
	./scripts/system-deps.sh
	$(BIN)/pip install -q -e '.[test,e2e]'
	touch $(VENV)/.test-deps

setup-test: $(VENV)/.test-deps

test: setup-test
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/run_all.py
