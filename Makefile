# The README's two commands: `make demo` and `make test`. Everything they need is installed here,
# from pinned files, so a fresh clone on a new machine needs only Python 3.11, Node 20 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Lint, format and type-check all Python code: the app, its tests, the benchmarks, and tools/
# with their tests.
CODE := $(wildcard rules storage orchestrators activities http_api function_app.py wiring.py tests bench tools)
# The local tools (stand-ins, CLI, stack runner), each a package of its own under tools/: installed
# editable, built by the pinned setuptools of requirements-dev.txt (no build isolation, so nothing
# is fetched at build time).
TOOLS := $(patsubst %/pyproject.toml,%,$(wildcard tools/*/pyproject.toml))

.PHONY: setup demo run test lint typecheck pytest bench-simulator bench-devhost bench-retries bench-edge clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt $(TOOLS:%=%/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -c constraints.txt \
		$(TOOLS:%=-e %)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# One image job end to end on the local defaults: Azurite, simulator and devhost on free ports,
# the CLI client starting and polling the job; everything is stopped afterwards.
demo: setup
	$(PY) -m localrun demo

# The whole local stack in the foreground on the documented ports; Ctrl-C stops all of it.
run: setup
	$(PY) -m localrun run

lint: $(VENV)/.installed
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(VENV)/.installed
	$(BIN)/mypy $(CODE)

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The same faults through a plain loop around the official SDK and through this service.
bench-retries: setup
	$(PY) -m localrun.bench_retries

bench-simulator: $(VENV)/.installed
	$(PY) -m simulator.bench

bench-devhost: $(VENV)/.installed
	$(PY) -m devhost.bench

# POST /api/images and GET /api/images/{id} against the Durable quickstart in the same devhost,
# sequential and with 50 concurrent callers (docs/benchmarks.md). BENCH_ARGS="--trace" adds
# the app's round trips timed inside the host.
bench-edge: setup
	$(PY) -m bench.edge_latency $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
