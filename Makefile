# The two commands of the README: `make demo` runs the main job, `make test` runs the suite.
# Both install everything first (CPU torch from the pinned wheel; the project in editable mode).
PY ?= python3
VENV ?= .venv
BIN = $(abspath $(VENV))/bin

.PHONY: install browser demo test

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"

# headless Chromium for the report render test (skipped with a reason where it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    echo "note: chromium not installed; the report render test will be skipped"; }

demo: install
	$(BIN)/fcs run restore --demo

# the venv's bin first on PATH: the suite's subprocesses (fcs, weed, Ray workers) use what `install` put there.
# Two test processes, a file each at a time: much of the suite waits on Ray start-up, subprocesses and
# kills, so two share 2 cores well (the whole suite took 657 s here with two).
TEST_PROCESSES ?= 2
test: install browser
	$(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)
