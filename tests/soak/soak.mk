# `make soak`: mixed traffic against two workers for SOAK_SECONDS, checking worker memory and
# file descriptors (tests/soak/soak.py says what passes). Not part of `make test`.
# Included from the Makefile; the summary goes to the Soak section of bench/RESULTS.md.

SOAK_SECONDS ?= 600
SOAK_ARGS ?=

.PHONY: soak

soak: dev-venv
	$(BIN)/python -m tests.soak.soak --seconds $(SOAK_SECONDS) --results bench/RESULTS.md $(SOAK_ARGS)
