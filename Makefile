# Two commands matter to a new user: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test test-unit lint venv dev-venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamps make a second `make` skip pip, and redo it when pyproject.toml changes.
$(VENV)/.runtime-stamp: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-stamp: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.runtime-stamp

venv: $(VENV)/.runtime-stamp
dev-venv: $(VENV)/.dev-stamp

run: venv
	$(BIN)/serve -c configs/example.yaml

lint: dev-venv
	$(BIN)/ruff check server supervisor tests examples
	$(BIN)/ruff format --check server supervisor tests examples
	$(BIN)/mypy

# wrk, h2load and nghttp drive the load and HTTP/2 tests (installed with apt when missing,
# as for `make bench`).
test: lint bench-wrk bench-h2load
	$(BIN)/pytest

test-unit: dev-venv
	$(BIN)/pytest tests/unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Longer-running targets live beside what they exercise.
include bench/bench.mk
include tests/fuzz/fuzz.mk
include tests/chaos/chaos.mk
include tests/soak/soak.mk
