"""Command-line options of bench/run.py, parsed once into a frozen, typed Options.

Rules:
- Defaults are those of `make bench`: 3 interleaved runs of 2 s per cell after a 1 s
  warm-up per scenario, concurrency 64 and 256, workers 1 and 2: about 28 minutes for
  every server and scenario. `--quick` (`make bench-quick`): every server and scenario,
  2 runs of 1 s, no warm-up, c64. `--smoke`: the harness end to end in about half a minute
  with nothing but serve installed (the tests run it): serve with the log off, text and
  JSON, and the floor, on plaintext, FastAPI and h2, 1 worker, c64, 1 run of 1 s. An
  option given explicitly wins over either.
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


# What `make bench`, --quick and --smoke run when an option is not given.
PRESETS: dict[str, dict[str, str]] = {
    "full": {
        "servers": ",".join(SERVERS),
        "scenarios": ",".join(SCENARIOS),
        "workers": "1,2",
        "concurrency": "64,256",
        "runs": "3",
        "duration": "2",
        "warmup": "1",
    },
}
PRESETS["quick"] = PRESETS["full"] | {
    "concurrency": "64",
    "runs": "2",
    "duration": "1",
    "warmup": "0",
}
PRESETS["smoke"] = PRESETS["quick"] | {
    "servers": "serve,serve-log,serve-log-json,floor",
    "scenarios": "plaintext,fastapi,h2",
    "workers": "1",
    "runs": "1",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark serve side by side with its peers (see bench/README.md).",
    )
    add = parser.add_argument
    add("--servers", help="comma-separated subset, in run order (default: all)")
    add("--scenarios", help="comma-separated subset (default: all)")
    add("--workers", help="worker counts (default 1,2)")
    add(
        "--concurrency", help="requests in flight: wrk connections, h2load streams (default 64,256)"
    )
    add("--runs", type=int, help="interleaved runs per cell (default 3)")
    add("--duration", type=int, help="seconds per load run (default 2)")
    add("--warmup", type=int, help="warm-up seconds (default 1)")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick",
        action="store_true",
        help="every server and scenario, 2 runs of 1 s, no warm-up, c64",
    )
    preset.add_argument(
        "--smoke",
        action="store_true",
        help="the harness end to end: serve "
        "(log off, text, JSON) and the floor on plaintext, fastapi and h2, w1, "
        "c64, 1 run of 1 s",
    )
    add("--quiet-wait", type=float, default=10.0, help="max seconds to wait for other load")
    add("--retry-noisy", type=int, default=1, help="redo a run disturbed by other load N times")
    # A full default run is estimated at about an hour on 2 CPUs.
    add("--max-minutes", type=float, default=90.0, help="start no server after this many")
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
    preset = PRESETS["smoke" if a.smoke else "quick" if a.quick else "full"]

    def chosen(name: str) -> str:
        given = getattr(a, name)
        return preset[name] if given is None else str(given)

    return Options(
        servers=_names(parser, "servers", chosen("servers"), dict(SERVERS)),
        scenarios=_names(parser, "scenarios", chosen("scenarios"), dict(SCENARIOS)),
        workers=_ints(parser, "--workers", chosen("workers")),
        concurrency=_ints(parser, "--concurrency", chosen("concurrency")),
        runs=_ints(parser, "--runs", chosen("runs"))[0],
        duration=_ints(parser, "--duration", chosen("duration"))[0],
        warmup=int(chosen("warmup")),
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
