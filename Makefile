# The two commands of the README: `make demo` runs the main job, `make test` runs the suite.
# Both install everything first (CPU torch from the pinned wheel; the project in editable mode).
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"

demo: install
	$(BIN)/fcs run restore --demo

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
