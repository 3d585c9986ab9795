# The README's two commands: `make demo` and `make test`. Everything they need is installed here,
# from pinned files, so a fresh clone on a new machine needs only Python 3.11, Node 20 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Lint, format and type-check all Python code: the app, its tests, the benchmarks, and tools/
# with their tests.
CODE := $(wildcard rules storage orchestrators activities http_api function_app.py wiring.py telemetry.py tests bench tools)
# The local tools (stand-ins, CLI, stack runner), each a package of its own under tools/: installed
# editable, built by the pinned setuptools of requirements-dev.txt (no build isolation, so nothing
# is fetched at build time).
TOOLS := $(patsubst %/pyproject.toml,%,$(wildcard tools/*/pyproject.toml))

.PHONY: setup demo run test lint typecheck pytest bench-simulator bench-devhost bench-retries bench-edge \
	bench-drain bench-retry-after bench-memory bench-overhead bench-freshness bench-fault-mix bench clean

# Debian's chromium, for the web page's browser test (tests/e2e/test_web_page.py, driven by the
# pinned Playwright of requirements-dev.txt). Never `playwright install`: it downloads a browser
# build of its own, which machines without the open internet cannot fetch.
CHROMIUM := /usr/bin/chromium

setup: $(VENV)/.installed node_modules/.installed $(CHROMIUM)

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt $(TOOLS:%=%/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -c constraints.txt \
		$(TOOLS:%=-e %)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Installed with apt-get as root (CI and these machines run as root) when the file is missing,
# else nothing: a second setup is a no-op. Elsewhere it only says how; the test then skips, and
# fails under CI=true (loopserver.testing.missing_service).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (for tests/e2e/test_web_page.py)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing: run 'apt-get install chromium' as root for the web page test" >&2; \
	fi

# Options of `make run` and `make demo`, passed on only when given (defaults: python -m localrun):
#   TIME_SCALE=25              divide the simulator's and the service's waits (run: 1, demo: 10)
#   SCENARIO=azure-gateway     what the simulator plays, with matching app settings (default)
#   AZURITE_PORT= SIMULATOR_PORT= DEVHOST_PORT=   run only (10000, 8089, 7071)
#   STATE=.state-2             run only: the state folder (jobs, images, logs; default .state)
LOCALRUN_OPTIONS = $(if $(TIME_SCALE),--time-scale $(TIME_SCALE)) $(if $(SCENARIO),--scenario $(SCENARIO))
RUN_PORTS = $(if $(AZURITE_PORT),--azurite-port $(AZURITE_PORT)) \
	$(if $(SIMULATOR_PORT),--simulator-port $(SIMULATOR_PORT)) \
	$(if $(DEVHOST_PORT),--devhost-port $(DEVHOST_PORT)) \
	$(if $(STATE),--state $(STATE))

# One image job end to end on the local defaults: Azurite, simulator and devhost on free ports,
# the CLI client starting and polling the job; everything is stopped afterwards.
demo: setup
	$(PY) -m localrun demo $(LOCALRUN_OPTIONS)

# The whole local stack in the foreground on the documented ports, in real time; Ctrl-C (or
# closing the terminal) stops all of it; a taken port fails it at once.
run: setup
	$(PY) -m localrun run $(LOCALRUN_OPTIONS) $(RUN_PORTS)

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

# 100 batch jobs posted at once to a 10 requests/min route (and 10 interactive ones over the
# run), against the theoretical minimum and a plain SDK loop, sequential and 100 threads
# (docs/benchmarks.md); about 11 minutes at time scale 5 (3.5 with --no-anchors).
# BENCH_ARGS="--manifest --no-anchors --time-scale N --header-style ..." and more.
bench-drain: setup
	$(PY) -m bench.drain $(BENCH_ARGS)

# A client that sleeps each Retry-After, and one that polls every 100 ms, against a direct SDK
# call, in real time (docs/benchmarks.md); about 4 minutes.
bench-retry-after: setup
	$(PY) -m bench.retry_after $(BENCH_ARGS)

# The worker's peak RSS over idle for one 3840x2160 high PNG job and for 20 at once, against the
# image's bytes: fresh worker-like processes running the generate activity on the simulator and
# Azurite (docs/benchmarks.md); about 3 minutes. BENCH_ARGS="--repetitions 5 --jobs 1,4,20" and more.
bench-memory: setup
	$(PY) -m bench.memory $(BENCH_ARGS)

# The Retry-After benchmark for 1024x1024 low (real time), 2048x2048 high and 3840x2160 high
# (time scale 25) (docs/benchmarks.md); about 3.5 minutes.
bench-overhead: setup
	$(PY) -m bench.overhead $(BENCH_ARGS)

# A partial image leaving the route until a 100 ms poller sees it, against the SDK's own event
# (docs/benchmarks.md); about 45 s.
bench-freshness: setup
	$(PY) -m bench.freshness $(BENCH_ARGS)

# Billable generations per saved image and images lost under a fault mix (a 429 storm,
# mid-stream errors, gateway kills, a storage outage, a worker kill), against a plain SDK loop
# (docs/benchmarks.md); about 1 minute.
bench-fault-mix: setup
	$(PY) -m bench.fault_mix $(BENCH_ARGS)

# Every figure above in one run, under 15 minutes on 2 cores: rewrites the generated blocks of
# docs/benchmarks.md and its charts (docs/benchmarks/). BENCH_ARGS="--only edge,freshness".
bench: setup
	$(PY) -m bench.suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
