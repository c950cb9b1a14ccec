"""The figures of a bench run: samples, their medians per cell, and ratios between servers.

Rules: pure functions of the samples (no clock, no IO). A cell is one (server, scenario,
workers, concurrency); every figure of it is the median over its interleaved runs, with
the spread (max - min) / median next to it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from bench.load import SCENARIOS

# The names the reports compare: this project, the reference peer and the Python floor.
OURS = "serve"
BASELINE = "uvicorn"
FLOOR = "floor"


@dataclass(frozen=True)
class Sample:
    """One wrk measurement of one server start."""

    server: str
    scenario: str
    workers: int
    concurrency: int
    rep: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    foreign_pct: float
    rps_per_cpu: float


@dataclass(frozen=True)
class StartSample:
    """Time from launching a server to its first 200 answer on `/`."""

    server: str
    workers: int
    ms: float
    protocol: str


@dataclass(frozen=True)
class Row:
    """The median of all samples of one (server, scenario, workers, concurrency) cell."""

    server: str
    scenario: str
    workers: int
    concurrency: int
    runs: int
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    start_ms: float
    foreign_pct: float
    rps_per_cpu: float
    cpu_spread_pct: float

    @property
    def spread_pct(self) -> float:
        return (self.rps_max - self.rps_min) / self.rps * 100 if self.rps else 0.0


Key = tuple[str, str, int, int]


def aggregate(samples: Iterable[Sample], starts: Iterable[StartSample]) -> dict[Key, Row]:
    cells: dict[Key, list[Sample]] = defaultdict(list)
    for s in samples:
        cells[(s.server, s.scenario, s.workers, s.concurrency)].append(s)
    start_ms: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for start in starts:
        start_ms[(start.server, start.protocol, start.workers)].append(start.ms)
    rows: dict[Key, Row] = {}
    for key, group in cells.items():
        rps = [s.rps for s in group]
        per_cpu = [s.rps_per_cpu for s in group]
        rows[key] = Row(
            *key,
            runs=len(group),
            rps=statistics.median(rps),
            rps_min=min(rps),
            rps_max=max(rps),
            p50_ms=statistics.median(s.p50_ms for s in group),
            p99_ms=statistics.median(s.p99_ms for s in group),
            errors=sum(s.errors for s in group),
            rss_mib=statistics.median(s.rss_mib for s in group),
            start_ms=statistics.median(
                start_ms[(key[0], SCENARIOS[key[1]].protocol, key[2])] or [0.0]
            ),
            foreign_pct=max(s.foreign_pct for s in group),
            rps_per_cpu=statistics.median(per_cpu),
            cpu_spread_pct=spread(per_cpu),
        )
    return rows


def spread(values: list[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle * 100 if middle else 0.0


def ratio(rows: dict[Key, Row], row: Row, other: str) -> float | None:
    ref = rows.get((other, row.scenario, row.workers, row.concurrency))
    return row.rps / ref.rps if ref is not None and ref.rps else None


def cpu_ratio(rows: dict[Key, Row], row: Row, other: str) -> float | None:
    """The same ratio in requests per server CPU-second: the cost of a request."""
    ref = rows.get((other, row.scenario, row.workers, row.concurrency))
    return row.rps_per_cpu / ref.rps_per_cpu if ref is not None and ref.rps_per_cpu else None
