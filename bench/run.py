"""Run every server on every scenario, interleaved, and write bench/RESULTS.md and the chart.

Usage (from the repository root, in the bench venv): python -m bench.run [--quick] [options]

Rules:
- Per worker count, every server is first started alone `runs` times to time its start
  (launch to first 200). Then all of them are started and stay up, idle but for the one
  under load, and each cell (scenario, concurrency) is measured A B C ... A B C ...: the
  runs of one cell are seconds apart, so the slow drift of a shared machine lands on every
  server alike and shows up as spread, not as a ratio.
- The HTTP/1.1 scenarios go first, under wrk; then the same steps are taken again for the
  HTTP/2 scenarios, under h2load, with each server's HTTP/2 command line and only the servers
  that have one (bench/servers.py).
- The load generator and the servers are pinned to disjoint CPUs where the machine has
  enough of them (see `pinning`); this process waits on the same CPU as the load generator.
- A measured run during which other processes took CPU is redone (`--retry-noisy`) and the
  quieter attempt kept; the choice looks only at the other load, never at the result.
- The run is bounded: every subprocess has a timeout and `--max-minutes` stops after the
  scenario in progress; whatever was measured is still reported, with the cut named.
- Only processes this run started are ever signalled (bench/servers.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import chart, machine, meta, report, sections, shares
from bench.figures import OURS, Sample, StartSample, aggregate
from bench.load import (
    SCENARIOS,
    LoadResult,
    group_of,
    probe,
    run_load,
)
from bench.machine import Pinning, pinning
from bench.options import ROOT, Options, cannot_run, parse_options
from bench.servers import APP, SERVERS, RunningServer, speakers

_SETTLE_S = 0.3  # per wrk run: process start and the report line
_START_S = 3.0  # per server start: boot, probes, stop
_NOISE_SHARE = 0.1
_PROTOCOLS = ("h1", "h2")


class Bench:
    """One bench run: the plan, the samples so far, and what failed."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.samples: list[Sample] = []
        self.starts: list[StartSample] = []
        # (server, workers, scenario or "*" for every scenario) -> what went wrong
        self.failures: dict[tuple[str, int, str], str] = {}
        self.cut = ""
        self.logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        self.latency_log = self.logs / "h2load-latency.tsv"
        # Launch groups: a protocol and the app every server runs for its scenarios.
        self.groups = list(dict.fromkeys(group_of(n) for n in options.scenarios))
        self.groups.sort(key=lambda group: _PROTOCOLS.index(group[0]))
        self.protocols = [p for p in _PROTOCOLS if any(g[0] == p for g in self.groups)]
        self.total = sum(
            len(options.workers) * len(self._for(name))
            * len(options.concurrency) * options.runs
            for name in options.scenarios
        )  # fmt: skip
        self.done = 0
        self.deadline = time.monotonic() + options.max_minutes * 60
        # Waiting for quiet and redoing disturbed runs stop once they would stretch the plan
        # by a tenth: on a machine that is never quiet they do not help, only make it late.
        self.quiet = machine.QuietRuns(
            _NOISE_SHARE * self.estimate_s(), options.quiet_wait, options.retry_noisy
        )

    def servers(self, group: tuple[str, str]) -> list[str]:
        """The chosen servers that run the group's protocol, app and a scenario of it, in order."""
        shapes, able = self._scenarios(group), speakers(*group)
        return [n for n in self.o.servers if n in able and any(map(SERVERS[n].runs, shapes))]

    def _for(self, scenario: str) -> list[str]:
        return [n for n in self.servers(group_of(scenario)) if SERVERS[n].runs(scenario)]

    def _scenarios(self, group: tuple[str, str]) -> list[str]:
        return [n for n in self.o.scenarios if group_of(n) == group]

    def estimate_s(self) -> float:
        o = self.o
        launches = sum(len(self.servers(g)) for g in self.groups) * len(o.workers)
        warmups = self.total / len(o.concurrency) / o.runs * (o.warmup + _SETTLE_S)
        return self.total * (o.duration + _SETTLE_S) + warmups + launches * (o.runs + 1) * _START_S

    def run(self) -> None:
        for workers in self.o.workers:
            pin = pinning(workers)
            os.sched_setaffinity(0, {int(c) for c in pin.wrk_cpus.split(",")})
            for group in self.groups:
                if group[1] == APP:
                    # Start times are those of the raw app; a framework's import is its own.
                    self._time_starts(group, workers, pin)
                live = self._start_all(group, workers, pin)
                try:
                    for scenario in self._scenarios(group):
                        self._scenario(live, scenario, pin)
                        if time.monotonic() > self.deadline:
                            self.cut = f"stopped at the {self.o.max_minutes:.0f}-minute limit"
                            return
                finally:
                    for server in live:
                        server.stop()

    def _launch(
        self, name: str, group: tuple[str, str], workers: int, pin: Pinning, tag: str
    ) -> RunningServer | None:
        """Start one server and wait for its first answer and all its workers; None if it fails."""
        protocol, app = group
        suffix = ("" if protocol == "h1" else f"-{protocol}") + ("" if app == APP else f"-{app}")
        log_path = self.logs / f"{name}{suffix}-w{workers}-{tag}.log"
        ready_path = SCENARIOS[self._scenarios(group)[0]].ready_path
        log = log_path.open("wb")
        spec, cpus = SERVERS[name], pin.server_cpus
        server = RunningServer(
            spec, workers, cpus, ROOT, log, protocol=protocol, app=app, ready_path=ready_path
        )
        try:
            ms = server.wait_ready() * 1000
            server.wait_workers()
        except RuntimeError as exc:
            server.stop()
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self.failures[(name, workers, _every(group))] = (
                f"{exc}; log: {' / '.join(tail) or '(empty)'}"
            )
            _progress(f"{name}{suffix} w{workers}: FAILED to start: {exc}")
            return None
        self.starts.append(StartSample(name, workers, ms, protocol))
        return server

    def _time_starts(self, group: tuple[str, str], workers: int, pin: Pinning) -> None:
        """Start-to-first-response, `runs` times per server, each alone on a quiet machine."""
        for rep in range(self.o.runs):
            for name in self.servers(group):
                if (name, workers, _every(group)) in self.failures:
                    continue
                self.quiet.wait()
                server = self._launch(name, group, workers, pin, f"start{rep + 1}")
                if server is not None:
                    server.stop()

    def _start_all(self, group: tuple[str, str], workers: int, pin: Pinning) -> list[RunningServer]:
        # Every server stays up, idle, while the others are measured: runs of one cell are
        # then seconds apart, not minutes, and the machine's drift hits every server alike.
        live = []
        for name in self.servers(group):
            if (name, workers, _every(group)) not in self.failures:
                server = self._launch(name, group, workers, pin, "bench")
                if server is not None:
                    live.append(server)
        return live

    def _scenario(self, every: list[RunningServer], name: str, pin: Pinning) -> None:
        live = [server for server in every if server.spec.runs(name)]
        ready = []
        for server in live:
            wrong = probe(server.port, SCENARIOS[name])
            if wrong is None:
                ready.append(server)
            else:
                self.failures[(server.spec.name, server.workers, name)] = f"wrong answer: {wrong}"
                _progress(f"{server.spec.name} w{server.workers} {name}: wrong answer: {wrong}")
        if self.o.warmup:
            # One warm-up per scenario: the next concurrency finds the server already warm.
            for server in ready:
                self._load(server, name, self.o.concurrency[0], self.o.warmup, pin)
        for conc in self.o.concurrency:
            for rep in range(1, self.o.runs + 1):
                for server in ready:
                    self._cell(server, name, conc, rep, pin)
        skipped = len(self._for(name)) - len(ready)
        self.done += skipped * len(self.o.concurrency) * self.o.runs

    def _cell(self, server: RunningServer, name: str, conc: int, rep: int, pin: Pinning) -> None:
        self.done += 1
        if (server.spec.name, server.workers, name) in self.failures:
            return
        label = f"{server.spec.name} {name} w{server.workers} c{conc} run {rep}/{self.o.runs}"
        _progress(f"[{self.done}/{self.total}] {label} ...", end="")
        try:
            result, cpu, tries = self.quiet.measure(
                server.processes(),
                lambda: self._load(server, name, conc, self.o.duration, pin),
                self.o.duration,
            )
        except (RuntimeError, subprocess.SubprocessError) as exc:
            _progress(f" FAILED: {exc}")
            self.failures[(server.spec.name, server.workers, name)] = f"wrk: {exc}"
            return
        # Read once the server is done with the run, at the same point for every server.
        server.settle()
        rss = server.rss_per_worker_mib()
        per_cpu = result.requests / cpu.server_cpu_s if cpu.server_cpu_s > 0 else 0.0
        self.samples.append(Sample(
            server.spec.name, name, server.workers, conc, rep, result.rps, result.p50_ms,
            result.p99_ms, result.errors, rss, cpu.foreign_pct, per_cpu,
        ))  # fmt: skip
        notes = [f"{result.rps:,.0f} req/s", f"{per_cpu:,.0f} req/CPU-s"]
        notes += [f"p99 {result.p99_ms:.2f} ms"]
        notes += [f"{result.errors} errors"] if result.errors else []
        if cpu.foreign_pct >= machine.QUIET_PCT:
            notes += [f"other load {cpu.foreign_pct:.0f}%"]
        notes += [f"quietest of {tries}"] if tries > 1 else []
        _progress(" " + ", ".join(notes))

    def _load(
        self, server: RunningServer, name: str, conc: int, seconds: int, pin: Pinning
    ) -> LoadResult:
        scenario = SCENARIOS[name]
        return run_load(server.port, scenario, conc, seconds, pin.wrk_cpus, log=self.latency_log)

    def worker_shares(self) -> shares.Shares:
        """Each of serve's 2 workers' share of requests, from bench/balance.py if it is there."""
        o = self.o
        if self.cut or OURS not in o.servers or shares.SHARE_WORKERS not in o.workers:
            return shares.Shares()
        if "plaintext" not in o.scenarios:
            return shares.Shares()
        # The run narrowed this process to wrk's CPU; what balance.py starts must not inherit it.
        os.sched_setaffinity(0, set(machine.CPUS))
        _progress("bench: each worker's share of requests (bench.balance) ...")
        return shares.measure(o.concurrency, o.duration)

    def describe(self, argv: list[str]) -> report.Meta:
        return meta.describe(
            self.o,
            argv,
            servers={p: self.servers((p, APP)) for p in self.protocols},
            failures=[f"{n} w{w} {what}: {why}" for (n, w, what), why in self.failures.items()],
            cut=self.cut,
        )


def _every(group: tuple[str, str]) -> str:
    """The failure key of a server that did not start: every scenario of that group."""
    protocol, app = group
    key = "*" if protocol == "h1" else f"* {protocol}"
    return key if app == APP else f"{key} {app}"


def _progress(text: str, end: str = "\n") -> None:
    print(text, end=end, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options = parse_options(args)
    problem = cannot_run(options)
    if problem:
        _progress(f"bench: {problem}")
        return 2
    bench = Bench(options)
    minutes = bench.estimate_s() / 60
    _progress(
        f"bench: {bench.total} load runs, about {minutes:.0f} min; server logs in {bench.logs}"
        " (removed after a run without failures)"
    )
    if minutes > options.max_minutes:
        _progress(
            f"bench: warning: --max-minutes {options.max_minutes:g} is below the estimate;"
            " the run will likely stop early and its report miss cells"
        )
    try:
        bench.run()
        found = bench.worker_shares()
    except KeyboardInterrupt:
        bench.cut = "interrupted by the user"
        found = shares.Shares(missing="the run was interrupted")
    _write(bench, found, args)
    if bench.failures or bench.cut:
        _progress(f"bench: server logs kept in {bench.logs}")
        return 1
    # The access-log variants write hundreds of MiB of lines per run.
    shutil.rmtree(bench.logs, ignore_errors=True)
    return 0


def _write(bench: Bench, found: shares.Shares, args: list[str]) -> None:
    """RESULTS.md (keeping the sections other runs wrote), the raw samples and the chart."""
    o = bench.o
    rows = aggregate(bench.samples, bench.starts)
    drawn = bool(rows) and chart.can_draw()
    text = report.document(rows, bench.describe(args), o.chart.name if drawn else None, found)
    print(text)
    previous = o.out.read_text() if o.out.exists() else ""
    o.out.write_text(sections.carry(previous, text))
    raw = {
        "samples": [dataclasses.asdict(s) for s in bench.samples],
        "starts": [dataclasses.asdict(s) for s in bench.starts],
        "shares": {str(c): list(v) for c, v in found.by_concurrency.items()},
    }
    o.json.write_text(json.dumps(raw, indent=1))
    if drawn:
        chart.chart(rows, o.scenarios, o.servers, o.chart)
    elif rows:
        _progress("bench: matplotlib is not installed here: no chart")
    _progress(f"bench: wrote {o.out}{f', {o.chart}' if drawn else ''} and {o.json}")


if __name__ == "__main__":
    sys.exit(main())
