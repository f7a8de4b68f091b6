# `make run` and `make test` work first on a fresh clone: both install into .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := 1

.PHONY: install run test viz mlflow-ui notebook benchmark clean-data

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/kedro run

test: install
	$(BIN)/python -m pytest -n 2   # two processes: the e2e tests are mostly waiting on subprocesses

viz: install
	$(BIN)/kedro viz run

notebook: install
	$(BIN)/python -m pip install --quiet -e '.[notebook]'
	$(BIN)/jupyter lab notebooks/compare_methods.ipynb

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

benchmark: install
	$(BIN)/python benchmarks/loop_overhead.py
