# `make fuzz`: coverage-guided fuzzing of the HTTP/1.1 framing layer, for a bounded time.
#
# Included from the Makefile (`make fuzz`). atheris lives in its own
# venv under build/ (ignored by git), so the dev venv never carries it; atheris 3.0.0 ships
# wheels for CPython 3.11. Findings are saved as build/fuzz/crash-*; replay one with
# `build/fuzz-venv/bin/python -m tests.fuzz.atheris_h1 build/fuzz/crash-...`.
# FUZZ_SECONDS=600 for a longer run; the corpus in build/fuzz/corpus grows across runs.

FUZZ_SECONDS ?= 60
FUZZ_PYTHON ?= $(or $(PYTHON),python3)
FUZZ_VENV := build/fuzz-venv
FUZZ_PY := $(FUZZ_VENV)/bin/python
FUZZ_DIR := build/fuzz

.PHONY: fuzz

$(FUZZ_VENV)/.fuzz-stamp: pyproject.toml tests/fuzz/fuzz.mk
	$(FUZZ_PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_PY) -m pip --disable-pip-version-check -q install -e . --only-binary=atheris 'atheris==3.0.0'
	touch $@

fuzz: $(FUZZ_VENV)/.fuzz-stamp
	mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_PY) -m tests.fuzz.atheris_h1 --write-seeds $(FUZZ_DIR)/seeds
	$(FUZZ_PY) -m tests.fuzz.atheris_h1 $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds \
		-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
		-dict=tests/fuzz/h1.dict -artifact_prefix=$(FUZZ_DIR)/ -print_final_stats=1
