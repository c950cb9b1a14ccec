"""Hypothesis profiles for the fuzz properties; each test takes FUZZ as its settings.

"h1-fuzz" (the default) is what `make test` runs: derandomized, so every run tries the same
examples and a failure reproduces, and bounded so the whole package stays well under 30 s.
SERVE_FUZZ_PROFILE=h1-fuzz-deep runs a random search fifteen times larger, on demand (with
pytest's --timeout=0: it takes minutes).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# deadline=None: a slow CI machine must not turn into a failure (a loop hits pytest's
# timeout instead); database=None: nothing is written beside the repository.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "h1-fuzz",
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "h1-fuzz-deep", max_examples=1500, deadline=None, database=None, suppress_health_check=_QUIET
)
FUZZ = settings.get_profile(os.environ.get("SERVE_FUZZ_PROFILE", "h1-fuzz"))
