# Two commands matter to a new user: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# What the repo's own commands install comes from these locks, never from whatever PyPI
# released this morning: runtime.lock for `make run` and the Dockerfile, dev.lock (runtime
# plus the dev extra, same pins) for `make test`. `make lock` regenerates both.
RUNTIME_LOCK := requirements/runtime.lock
DEV_LOCK     := requirements/dev.lock

.PHONY: run test test-unit test-latest lint lock lock-info venv dev-venv clean

# A venv holds exactly one lock: it is built anew whenever its lock or pyproject.toml changes,
# so a pin changed or a package dropped there is what the next command runs with. setuptools
# is in the lock too, and the project itself installs without build isolation, so not even
# the build backend comes from outside the lock.
define install_lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@echo "installing from $(1)"
	$(PIP) install --require-hashes --no-deps -r $(1)
	$(PIP) install --no-deps --no-build-isolation -e .
endef

$(VENV)/.runtime-stamp: $(RUNTIME_LOCK) pyproject.toml
	$(call install_lock,$(RUNTIME_LOCK))
	touch $@

$(VENV)/.dev-stamp: $(DEV_LOCK) pyproject.toml
	$(call install_lock,$(DEV_LOCK))
	touch $@ $(VENV)/.runtime-stamp

venv: $(VENV)/.runtime-stamp
dev-venv: $(VENV)/.dev-stamp

run: venv
	$(BIN)/serve -c configs/example.yaml

lint: dev-venv
	$(BIN)/ruff check serve server supervisor tests examples requirements bench
	$(BIN)/ruff format --check serve server supervisor tests examples requirements bench
	$(BIN)/mypy

# The first lines of a test run name the lock and the versions that matter most, so a red run
# can be traced to a version.
lock-info: dev-venv
	@$(BIN)/python requirements/lock_info.py $(DEV_LOCK)

# wrk, h2load and nghttp drive the load and HTTP/2 tests (installed with apt when missing,
# as for `make bench`).
test: lock-info lint bench-wrk bench-h2load
	$(BIN)/pytest

test-unit: dev-venv
	$(BIN)/pytest tests/unit

# uv resolves the locks; it is pinned here so that two maintainers regenerate alike. Run
# `make lock` after changing a dependency in pyproject.toml, and commit both files.
# `make lock UPGRADE=1` moves every pin to the newest release (what `make test-latest`
# tried), `make lock UPGRADE_PACKAGE=httpx` moves one (`httpx==0.28.1` to that version).
UV_VERSION := 0.13.9
LOCK_VENV  := .lock-venv
UV         := $(LOCK_VENV)/bin/uv
UV_COMPILE := $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) \
	$(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE))

$(UV):
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip --disable-pip-version-check -q install uv==$(UV_VERSION)

lock: | $(UV)
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra dev -o $(DEV_LOCK)
	$(UV_COMPILE) pyproject.toml requirements/build.in -c $(DEV_LOCK) -o $(RUNTIME_LOCK)

# Drift on purpose: the newest release of every dependency in a throwaway venv, then the
# suite. Not part of `make test`; run it before `make lock UPGRADE=1`.
LATEST_VENV := .latest-venv
test-latest: bench-wrk bench-h2load
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check -q install --upgrade pip setuptools
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check -q install --upgrade --upgrade-strategy eager -e '.[dev]'
	@$(LATEST_VENV)/bin/python requirements/lock_info.py
	$(LATEST_VENV)/bin/pytest -p no:cacheprovider

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(LATEST_VENV) .mypy_cache .ruff_cache .pytest_cache

# Longer-running targets live beside what they exercise.
include bench/bench.mk
include tests/fuzz/fuzz.mk
include tests/chaos/chaos.mk
include tests/soak/soak.mk
