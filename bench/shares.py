"""Each serve worker's share of the requests with 2 workers, asked of bench/balance.py.

Rules:
- bench/balance.py (the accept-balance work) owns that measurement; this module only asks
  it and carries the answer to the report. What it calls there:

      measure_shares(workers: int, concurrency: int, duration_s: float) -> Sequence[float]

  serve started by balance.py itself with `workers` workers on the plaintext app, under
  load at `concurrency` for `duration_s` seconds, and what each worker served: one number
  per worker, fractions or request counts alike (they are scaled here to sum to 1), as a
  sequence or as a mapping from worker (a pid) to its number.
- The bench never fails for it: a missing module or function, an error, or an answer with
  nothing in it is "not measured" with the reason, in the report's targets table.
- balance.py is called with the runner's CPU affinity widened back to every CPU, so the
  serve it starts is not confined to the load generator's CPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

BALANCE_MODULE = "bench.balance"
SHARE_WORKERS = 2


@dataclass(frozen=True)
class Shares:
    """Per concurrency, each worker's share (summing to 1); and why any is missing."""

    by_concurrency: dict[int, tuple[float, ...]] = field(default_factory=dict)
    missing: str = "not asked: this run had no 2-worker serve plaintext cell"


def normalised(values: Iterable[float]) -> tuple[float, ...]:
    """`values` scaled to sum to 1; empty when they sum to nothing."""
    found = tuple(float(v) for v in values)
    total = sum(found)
    return tuple(v / total for v in found) if total > 0 else ()


def _measure_function(module: str) -> Callable[..., Any] | str:
    """balance.py's measure_shares, or why there is none."""
    try:
        balance = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            return f"{module} cannot be imported: {exc}"
        return f"{module} is not in this tree"
    except Exception as exc:  # an error of another module: reported, not raised
        return f"{module} cannot be imported: {type(exc).__name__}: {exc}"
    function: object = getattr(balance, "measure_shares", None)
    if not callable(function):
        return f"{module} has no measure_shares()"
    return function


def measure(
    concurrencies: Sequence[int], duration_s: float, module: str = BALANCE_MODULE
) -> Shares:
    """Ask balance.py for the shares at each concurrency; whatever fails is named."""
    function = _measure_function(module)
    if isinstance(function, str):
        return Shares({}, function)
    found: dict[int, tuple[float, ...]] = {}
    problems = []
    for concurrency in concurrencies:
        try:
            answer = function(workers=SHARE_WORKERS, concurrency=concurrency, duration_s=duration_s)
            shares = normalised(answer.values() if hasattr(answer, "values") else answer)
        except Exception as exc:  # balance.py's failure is a line in the report, not a crash
            problems.append(f"c{concurrency}: {type(exc).__name__}: {exc}")
            continue
        if len(shares) != SHARE_WORKERS:
            problems.append(f"c{concurrency}: {len(shares)} shares for {SHARE_WORKERS} workers")
            continue
        found[concurrency] = shares
    return Shares(found, "; ".join(f"measure_shares() failed at {p}" for p in problems))
