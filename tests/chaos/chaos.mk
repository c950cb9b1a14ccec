# `make chaos`: random HUP, TTIN, TTOU, kill -9, memory leaks and blocked loops against a
# loaded master (tests/chaos/chaos.py says what passes). Included from the Makefile.
# CHAOS_SECONDS=600 for a longer run; CHAOS_ARGS="--seed 7" replays a run; the summary
# goes to the Chaos section of bench/RESULTS.md, serve's log to build/chaos/serve.log.

CHAOS_SECONDS ?= 120
CHAOS_ARGS ?=

.PHONY: chaos

chaos: dev-venv
	$(BIN)/python -m tests.chaos.chaos --seconds $(CHAOS_SECONDS) --results bench/RESULTS.md \
		--log-dir build/chaos $(CHAOS_ARGS)
