# `make bench`: serve side by side with its peers (bench/README.md). Included by the Makefile.
# BENCH_ARGS passes options to the runner, e.g.
#   make bench BENCH_ARGS="--servers serve,uvicorn --scenarios plaintext --runs 3"
PYTHON      ?= python3
BENCH_VENV  := .bench-venv
BENCH_PY    := $(BENCH_VENV)/bin/python
BENCH_ARGS  ?=
# apt-get needs root; elsewhere go through sudo.
BENCH_SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench bench-quick bench-venv bench-wrk bench-h2load bench-preload bench-shedding bench-balance

$(BENCH_PY):
	$(PYTHON) -m venv $(BENCH_VENV)

# A separate venv: the peers never enter .venv, and serve runs on the same Python as they do,
# with its dependencies from the same lock as `make run`.
$(BENCH_VENV)/.bench-stamp: bench/requirements.txt requirements/runtime.lock pyproject.toml | $(BENCH_PY)
	$(BENCH_PY) -m pip --disable-pip-version-check -q install --require-hashes --no-deps -r requirements/runtime.lock
	$(BENCH_PY) -m pip --disable-pip-version-check -q install -r bench/requirements.txt
	$(BENCH_PY) -m pip --disable-pip-version-check -q install --no-deps --no-build-isolation -e .
	touch $@

bench-venv: $(BENCH_VENV)/.bench-stamp

bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { $(BENCH_SUDO) apt-get update && $(BENCH_SUDO) apt-get install -y wrk; }

# h2load drives the HTTP/2 scenario (and, with nghttp, the HTTP/2 tests); Debian ships both
# in nghttp2-client.
bench-h2load:
	@command -v h2load >/dev/null 2>&1 && command -v nghttp >/dev/null 2>&1 || { $(BENCH_SUDO) apt-get update && $(BENCH_SUDO) apt-get install -y nghttp2-client; }

bench: bench-venv bench-wrk bench-h2load
	$(BENCH_PY) -m bench.run $(BENCH_ARGS)
	$(BENCH_PY) -m bench.shedding
	$(BENCH_PY) -m bench.balance

# Each worker's share of the load with 2 workers, serve and uvicorn (about 3 minutes):
# bench/balance.json; `BALANCE_ARGS="--tree old=../other-checkout"` adds another serve.
bench-balance: bench-venv bench-wrk
	$(BENCH_PY) -m bench.balance $(BALANCE_ARGS)

# One serve worker at 3x its capacity, shedding off and on (about a minute): bench/SHEDDING.md.
bench-shedding: bench-venv
	$(BENCH_PY) -m bench.shedding

bench-quick: bench-venv bench-wrk bench-h2load
	$(BENCH_PY) -m bench.run --quick $(BENCH_ARGS)

# Memory per worker with and without preload (bench/preload_memory.py); needs no load tool.
bench-preload: bench-venv
	$(BENCH_PY) -m bench.preload_memory $(BENCH_ARGS)
