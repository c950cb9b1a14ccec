"""Command-line options of bench/run.py, parsed once into a frozen, typed Options.

Rules:
- Defaults are those of `make bench`: 3 interleaved runs of 2 s per cell after a 1 s
  warm-up per scenario, concurrency 64 and 256, workers 1 and 2: about 28 minutes for
  every server and scenario. `--quick` is a smoke run: 2 runs of 1 s, no warm-up, c64.
- `--concurrency` is requests in flight: wrk connections, or h2load connections times
  streams for the h2 scenario (bench/load.py).
- Unknown server or scenario names are a usage error that lists the known ones.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.load import SCENARIOS
from bench.servers import SERVERS, speakers

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
LOAD_TOOLS = {"h1": "wrk", "h2": "h2load"}


@dataclass(frozen=True)
class Options:
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    workers: tuple[int, ...]
    concurrency: tuple[int, ...]
    runs: int
    duration: int
    warmup: int
    quiet_wait: float
    retry_noisy: int
    max_minutes: float
    out: Path
    chart: Path
    json: Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark serve side by side with its peers (see bench/README.md).",
    )
    add = parser.add_argument
    add("--servers", default=",".join(SERVERS), help="comma-separated subset, in run order")
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    add("--workers", default="1,2", help="worker counts (default 1,2)")
    add(
        "--concurrency",
        default=None,
        help="requests in flight: wrk connections, h2load streams (default 64,256; --quick: 64)",
    )
    add("--runs", type=int, default=None, help="interleaved runs per cell (default 3; --quick: 2)")
    add("--duration", type=int, default=None, help="seconds per load run (default 2; --quick: 1)")
    add("--warmup", type=int, default=None, help="warm-up seconds (default 1; --quick: 0)")
    add("--quick", action="store_true", help="smoke run: 2 runs of 1 s, no warm-up, c64")
    add("--quiet-wait", type=float, default=10.0, help="max seconds to wait for other load")
    add("--retry-noisy", type=int, default=1, help="redo a run disturbed by other load N times")
    add("--max-minutes", type=float, default=40.0, help="start no server after this many")
    add("--out", type=Path, default=HERE / "RESULTS.md", help="markdown report")
    add("--chart", type=Path, default=HERE / "results.png", help="bar chart (PNG)")
    add("--json", type=Path, default=HERE / "results.json", help="raw samples")
    return parser


def _names(
    parser: argparse.ArgumentParser, what: str, text: str, known: dict[str, object]
) -> tuple[str, ...]:
    chosen = tuple(n for n in text.split(",") if n)
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        parser.error(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def _ints(parser: argparse.ArgumentParser, what: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        parser.error(f"{what}: expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{what}: every value must be >= 1")
    return values


def parse_options(argv: list[str]) -> Options:
    parser = _parser()
    a = parser.parse_args(argv)
    return Options(
        servers=_names(parser, "servers", a.servers, dict(SERVERS)),
        scenarios=_names(parser, "scenarios", a.scenarios, dict(SCENARIOS)),
        workers=_ints(parser, "--workers", a.workers),
        concurrency=_ints(
            parser, "--concurrency", a.concurrency or ("64" if a.quick else "64,256")
        ),
        runs=int(a.runs or (2 if a.quick else 3)),
        duration=int(a.duration or (1 if a.quick else 2)),
        warmup=int(a.warmup if a.warmup is not None else (0 if a.quick else 1)),
        quiet_wait=float(a.quiet_wait),
        retry_noisy=int(a.retry_noisy),
        max_minutes=float(a.max_minutes),
        out=Path(a.out),
        chart=Path(a.chart),
        json=Path(a.json),
    )


def cannot_run(o: Options) -> str | None:
    """Why this plan cannot run on this machine, or None."""
    protocols = {SCENARIOS[n].protocol for n in o.scenarios}
    if protocols == {"h2"} and not set(o.servers) & set(speakers("h2")):
        return f"--servers: none of them speaks HTTP/2 (those that do: {', '.join(speakers('h2'))})"
    for tool in ["taskset", *(LOAD_TOOLS[p] for p in sorted(protocols))]:
        if shutil.which(tool) is None:
            return (
                f"{tool} not found (make bench installs wrk, and h2load from nghttp2-client; "
                "taskset is util-linux)"
            )
    return None
