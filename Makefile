# The README's two commands: `make demo` and `make test`. Everything they need is installed here,
# from pinned files, so a fresh clone on a new machine needs only Python 3.11, Node 20 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Lint, format and type-check every Python path of the project that exists.
CODE := $(wildcard loopserver simulator devhost rules orchestrators activities http_api clients function_app.py scripts tests)

.PHONY: setup test lint typecheck pytest bench-simulator clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(VENV)/.installed
	$(BIN)/mypy $(CODE)

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench-simulator: $(VENV)/.installed
	$(PY) -m simulator.bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
