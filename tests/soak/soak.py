"""Soak: long mixed traffic against two workers, watching their memory and file descriptors.

    python -m tests.soak.soak --seconds 600 [--warmup 60] [--results bench/RESULTS.md]

Starts serve (tests/apps/reliability_apps.py, 2 workers, no memory or request limit so no
worker is replaced), counts each worker's open file descriptors while idle (the baseline),
then runs loopback load clients for SECONDS: small answers, 1 MiB downloads, chunked
streams, 64 KiB-1 MiB uploads and short waits, a quarter of them with `Connection: close`.
Every SAMPLE_S it samples each worker's RSS (psutil), descriptor count (/proc/PID/fd) and
Python heap blocks (the app's /memory). After the load stops it waits for the descriptor
counts to come back down.

It passes (exit 0) when no request failed (any non-200, short body or socket error), the
same workers served from start to end, each worker's RSS grew less than --rss-growth-pct
from the end of the warm-up to the end of the load, and every worker's descriptor count is
back at its baseline. Each end of the growth is the median of the samples of a window
(WINDOW_S, or a fifth of the measured time in a short run): a single sample swings by a
megabyte or more with the 1 MiB bodies in flight at that moment.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from bench import sections
from tests.apps.reliability_apps import DOWNLOAD_BYTES, STREAM_CHUNK_BYTES, STREAM_CHUNKS
from tests.load_client import Plan, Request, ResponseReader, load
from tests.reliability_run import (
    fd_count,
    results_header,
    rss_mib,
    running_serve,
    shown_command,
    table,
)

WORKERS = 2
CLIENTS = 4
SAMPLE_S = 5.0
WINDOW_S = 60.0
# How long descriptors may take to come back once the clients closed their connections.
FD_SETTLE_S = 20.0
CLOSE_SHARE = 0.25
_UPLOAD = b"u" * (1024 * 1024)
# (share of requests, request maker): the mix every client draws from.
MIX: list[tuple[float, Any]] = [
    (0.40, lambda rng: Request("/")),
    (0.10, lambda rng: Request("/download", expect_length=DOWNLOAD_BYTES)),
    (0.15, lambda rng: Request("/stream", expect_length=STREAM_CHUNK_BYTES * STREAM_CHUNKS)),
    (0.15, lambda rng: _upload(rng.randint(64 * 1024, len(_UPLOAD)))),
    (0.20, lambda rng: Request("/wait")),
]


def _upload(size: int) -> Request:
    return Request("/upload", "POST", _UPLOAD[:size], expect_body=str(size).encode())


def mixed(rng: random.Random) -> tuple[Request, bool]:
    pick = rng.random()
    for share, make in MIX:
        pick -= share
        if pick < 0:
            return make(rng), rng.random() < CLOSE_SHARE
    return MIX[0][1](rng), False


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss: dict[int, float]
    fds: dict[int, int]
    # sys.getallocatedblocks() of each worker that answered /memory this time.
    blocks: dict[int, int]


def python_blocks(port: int, pids: list[int]) -> dict[int, int]:
    """Ask /memory on new connections until each worker answered (or 8 tries per worker)."""
    found: dict[int, int] = {}
    for _ in range(8 * len(pids)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(Request("/memory").encode(close=True))
            answer = ResponseReader(sock).read()
        found[answer.pid] = int(answer.body)
        if set(pids) <= set(found):
            break
    return found


@dataclass
class Report:
    seconds: float
    warmup: float
    rss_bound_pct: float
    sent: int = 0
    ok: int = 0
    received_mib: float = 0.0
    failures: list[str] = field(default_factory=list)
    replaced: bool = False
    samples: list[Sample] = field(default_factory=list)
    fd_baseline: dict[int, int] = field(default_factory=dict)
    fd_after: dict[int, int] = field(default_factory=dict)

    def windows(self) -> tuple[list[Sample], list[Sample]]:
        """The samples of the first window after the warm-up, and of the last one."""
        window = min(WINDOW_S, (self.seconds - self.warmup) / 5)
        measured = [s for s in self.samples if s.at >= self.warmup] or self.samples[-1:]
        first = [s for s in measured if s.at < self.warmup + window] or measured[:1]
        last = [s for s in measured if s.at >= self.seconds - window] or measured[-1:]
        return first, last

    def growth(self, figure: str) -> dict[int, tuple[float, float, float]]:
        """pid -> (median after the warm-up, median at the end, growth in %) of `figure`
        ("rss" or "blocks")."""
        first, last = self.windows()
        result = {}
        for pid in self.fd_baseline:
            start = median(getattr(s, figure)[pid] for s in first if pid in getattr(s, figure))
            end = median(getattr(s, figure)[pid] for s in last if pid in getattr(s, figure))
            result[pid] = (start, end, (end - start) / start * 100)
        return result

    @property
    def problems(self) -> list[str]:
        found = []
        if self.failures:
            found.append(f"{len(self.failures)} failed requests")
        if self.replaced:
            found.append("a worker was replaced during the soak")
        for pid, (_, _, pct) in self.growth("rss").items():
            if pct >= self.rss_bound_pct:
                found.append(f"worker {pid} RSS grew {pct:.1f}% (bound {self.rss_bound_pct:g}%)")
        for pid, baseline in self.fd_baseline.items():
            if self.fd_after.get(pid) != baseline:
                found.append(f"worker {pid}: {self.fd_after.get(pid)} fds, baseline {baseline}")
        return found


def serve_config() -> dict[str, Any]:
    return {
        "app": "reliability_apps:app",
        "bind": ["127.0.0.1:0"],
        "workers": WORKERS,
        "access_log": False,
    }


def _settled_fds(pids: list[int], baseline: dict[int, int]) -> dict[int, int]:
    deadline = time.monotonic() + FD_SETTLE_S
    while True:
        counts = {pid: fd_count(pid) for pid in pids}
        if counts == baseline or time.monotonic() >= deadline:
            return counts
        time.sleep(0.1)


def run(seconds: float, warmup: float, seed: int, rss_bound_pct: float = 5.0) -> Report:
    report = Report(seconds, warmup, rss_bound_pct)
    plans: list[Plan] = [mixed] * CLIENTS
    interval = min(SAMPLE_S, seconds / 10)
    with running_serve(serve_config()) as serve:
        pids = sorted(serve.worker_pids())
        report.fd_baseline = {pid: fd_count(pid) for pid in pids}
        with load(serve.port, plans=plans, seed=seed, warmup=1) as traffic:
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                sample = Sample(
                    elapsed,
                    {pid: rss_mib(pid) for pid in pids},
                    {pid: fd_count(pid) for pid in pids},
                    python_blocks(serve.port, pids),
                )
                report.samples.append(sample)
                time.sleep(min(interval, max(0.0, seconds - elapsed)))
        report.replaced = sorted(serve.worker_pids()) != pids
        report.fd_after = _settled_fds(pids, report.fd_baseline) if not report.replaced else {}
    report.failures = [repr(f) for f in traffic.failures]
    report.ok = traffic.ok
    report.sent = traffic.ok + len(traffic.failures)
    report.received_mib = traffic.received / (1024 * 1024)
    return report


def _per_minute(report: Report, pid: int) -> str:
    marks = range(0, int(report.seconds), 60)
    picked = [min(report.samples, key=lambda s: abs(s.at - mark)).rss[pid] for mark in marks]
    return " ".join(f"{rss:.1f}" for rss in picked)


def summary(report: Report) -> str:
    rss, blocks = report.growth("rss"), report.growth("blocks")
    peak = {pid: max(s.fds[pid] for s in report.samples) for pid in report.fd_baseline}
    measured = [s for s in report.samples if s.at >= report.warmup]
    rate = report.sent / report.seconds
    first, last = report.windows()
    rows = [
        (
            "duration",
            f"{report.seconds:g} s of load ({report.warmup:g} s warm-up), {WORKERS} workers, "
            f"{CLIENTS} clients",
        ),
        (
            "traffic",
            "40% small, 10% 1 MiB downloads, 15% chunked streams, 15% 64 KiB-1 MiB uploads, "
            f"20% 20 ms waits; {CLOSE_SHARE:.0%} with Connection: close",
        ),
        ("requests", f"{report.sent:,} ({rate:,.0f}/s), {report.received_mib:,.0f} MiB received"),
        ("error responses and failed requests", str(len(report.failures))),
        (
            f"worker RSS after warm-up -> end (medians of {len(first)} and {len(last)} samples)",
            "; ".join(f"{a:.1f} -> {b:.1f} MiB ({pct:+.2f}%)" for a, b, pct in rss.values()),
        ),
        (
            "worker RSS min / max after warm-up",
            "; ".join(
                f"{min(s.rss[p] for s in measured):.1f} / {max(s.rss[p] for s in measured):.1f} MiB"
                for p in report.fd_baseline
            ),
        ),
        (
            "worker RSS each minute, MiB",
            "; ".join(_per_minute(report, pid) for pid in report.fd_baseline),
        ),
        (
            "worker Python heap blocks after warm-up -> end",
            "; ".join(f"{a:,.0f} -> {b:,.0f} ({pct:+.2f}%)" for a, b, pct in blocks.values()),
        ),
        (
            "worker fds baseline / peak / after",
            "; ".join(
                f"{report.fd_baseline[p]} / {peak[p]} / {report.fd_after.get(p, '?')}"
                for p in report.fd_baseline
            ),
        ),
        ("samples", f"{len(report.samples)}, one per {min(SAMPLE_S, report.seconds / 10):g} s"),
        ("result", "; ".join(report.problems) or "pass"),
    ]
    return table(rows)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tests.soak.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--warmup", type=float, default=None, help="default: 60 s, or a tenth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-growth-pct", type=float, default=5.0)
    parser.add_argument("--results", type=Path, default=None, help="update its Soak section")
    args = parser.parse_args(args_in)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds / 10)
    if not 0 <= warmup < args.seconds:
        parser.error(f"--warmup: must be below --seconds ({args.seconds:g}), got {warmup:g}")
    print(f"soak: {args.seconds:g} s, warm-up {warmup:g} s", flush=True)
    report = run(args.seconds, warmup, args.seed, args.rss_growth_pct)
    text = summary(report)
    print(text)
    for failure in report.failures[:20]:
        print(f"failed: {failure}")
    if args.results is not None:
        header = results_header(shown_command("tests.soak.soak", args_in))
        sections.update(args.results, "Soak", f"{header}\n{text}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
