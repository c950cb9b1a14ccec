"""Run every server on every scenario, interleaved, and write bench/RESULTS.md and the chart.

Usage (from the repository root, in the bench venv): python -m bench.run [--quick] [options]

Rules:
- Runs are interleaved: for each worker count, repetition r starts every server in turn
  (A B C … then A B C … again), so slow drift of a shared machine lands on all servers alike
  and shows up as spread rather than as a ratio.
- wrk and the servers are pinned to disjoint CPUs where the machine has enough of them
  (see `pinning`); this process waits on the same CPUs as wrk.
- The run is bounded: every subprocess has a timeout and `--max-minutes` stops starting
  new servers; whatever was measured is still reported, with the cut named.
- Only processes this run started are ever signalled (bench/servers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench import report
from bench.load import SCENARIOS, probe, run_wrk, wrk_command
from bench.servers import SERVERS, RunningServer, ServerSpec

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
_SETTLE_S = 0.3  # per wrk run: process start and the report line


@dataclass(frozen=True)
class Pinning:
    server_cpus: str
    wrk_cpus: str
    wrk_threads: int


def pinning(workers: int) -> Pinning:
    """Disjoint CPUs when there are enough; otherwise the servers share wrk's CPU (see README)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > workers:
        return Pinning(_cpulist(cpus[1 : 1 + workers]), str(cpus[0]), 1)
    return Pinning(_cpulist(cpus), str(cpus[0]), 1)


def _cpulist(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", default=None, help="connections, default 64,256")
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs per cell")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run (3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up seconds per run (1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1s runs, no warm-up, c64")
    parser.add_argument("--max-minutes", type=float, default=40.0, help="stop starting servers after")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="markdown report path")
    parser.add_argument("--chart", default=str(HERE / "results.png"), help="PNG chart path")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="raw samples path")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or ("64" if args.quick else "64,256")
    args.duration = args.duration or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    for name, known in (("servers", SERVERS), ("scenarios", SCENARIOS)):
        chosen = getattr(args, name).split(",")
        unknown = [c for c in chosen if c not in known]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (known: {', '.join(known)})")
        setattr(args, name, chosen)
    args.workers = [int(w) for w in args.workers.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


class Bench:
    """One bench run: the plan, the samples so far, and what failed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.samples: list[report.Sample] = []
        self.failures: dict[tuple[str, int], str] = {}
        self.cut = ""
        self.logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        per_start = len(args.scenarios) * len(args.concurrency)
        self.total = len(args.workers) * args.runs * len(args.servers) * per_start
        self.done = 0
        self.deadline = time.monotonic() + args.max_minutes * 60

    def estimate_s(self) -> float:
        per_run = self.args.duration + self.args.warmup + 2 * _SETTLE_S
        return self.total * per_run + len(self.args.workers) * self.args.runs * len(self.args.servers) * 2

    def run(self) -> None:
        for workers in self.args.workers:
            pin = pinning(workers)
            os.sched_setaffinity(0, {int(c) for c in pin.wrk_cpus.split(",")})
            for rep in range(1, self.args.runs + 1):
                for name in self.args.servers:
                    if time.monotonic() > self.deadline:
                        self.cut = f"stopped at the {self.args.max_minutes:.0f}-minute limit"
                        return
                    self._one_start(SERVERS[name], workers, rep, pin)

    def _one_start(self, spec: ServerSpec, workers: int, rep: int, pin: Pinning) -> None:
        if (spec.name, workers) in self.failures:
            self.done = self._expected_done(spec.name, workers, rep)
            return
        log_path = self.logs / f"{spec.name}-w{workers}-r{rep}.log"
        server = RunningServer(spec, workers, pin.server_cpus, ROOT, log_path.open("wb"))
        try:
            start_ms = server.wait_ready() * 1000
            server.wait_workers()
            for scenario in self.args.scenarios:
                self._scenario(server, scenario, rep, start_ms, pin)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self.failures[(spec.name, workers)] = f"{exc}; log: {' / '.join(tail) or '(empty)'}"
            _progress(f"{spec.name} w{workers}: FAILED {exc}")
        finally:
            server.stop()
        self.done = max(self.done, self._expected_done(spec.name, workers, rep))

    def _expected_done(self, name: str, workers: int, rep: int) -> int:
        per_start = len(self.args.scenarios) * len(self.args.concurrency)
        starts_before = self.args.workers.index(workers) * self.args.runs * len(self.args.servers)
        starts_before += (rep - 1) * len(self.args.servers) + self.args.servers.index(name) + 1
        return starts_before * per_start

    def _scenario(
        self, server: RunningServer, name: str, rep: int, start_ms: float, pin: Pinning
    ) -> None:
        scenario = SCENARIOS[name]
        wrong = probe(server.port, scenario)
        if wrong is not None:
            raise RuntimeError(f"{name}: wrong answer: {wrong}")
        for conc in self.args.concurrency:
            self.done += 1
            label = f"{server.spec.name} {name} w{server.workers} c{conc} run {rep}/{self.args.runs}"
            _progress(f"[{self.done}/{self.total}] {label} ...", end="")
            if self.args.warmup:
                run_wrk(self._wrk(server, name, conc, self.args.warmup, pin), self.args.warmup)
            result = run_wrk(self._wrk(server, name, conc, self.args.duration, pin), self.args.duration)
            sample = report.Sample(
                server.spec.name, name, server.workers, conc, rep, result.rps, result.p50_ms,
                result.p99_ms, result.errors, server.rss_per_worker_mib(), start_ms,
            )  # fmt: skip
            self.samples.append(sample)
            errors = f", {result.errors} errors" if result.errors else ""
            _progress(f" {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms{errors}")

    def _wrk(self, server: RunningServer, name: str, conc: int, seconds: int, pin: Pinning) -> list[str]:
        return wrk_command(server.port, SCENARIOS[name], conc, seconds, pin.wrk_cpus, pin.wrk_threads)


def _progress(text: str, end: str = "\n") -> None:
    print(text, end=end, file=sys.stderr, flush=True)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} CPUs, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}"


def _wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).split(" [", 1)[0].strip()


def _meta(bench: Bench, argv: list[str]) -> report.Meta:
    args = bench.args
    python = Path(sys.executable)
    with_root = python.relative_to(ROOT) if python.is_relative_to(ROOT) else Path(python.name)
    pins = {w: pinning(w) for w in args.workers}
    commands = []
    for name in args.servers:
        spec = SERVERS[name]
        argv_1 = spec.argv(1, 8000)
        shown = [Path(argv_1[0]).name if i == 0 else a for i, a in enumerate(argv_1)]
        commands.append((name, f"{spec.package} {_version(spec.package)}", shlex.join(shown)))
    example = wrk_command(8000, SCENARIOS["echo64k"], 64, args.duration, pins[args.workers[0]].wrk_cpus, 1)
    example = [str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in example]
    return report.Meta(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=_machine(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        tools=f"{_wrk_version()}; uvloop {_version('uvloop')}, httptools {_version('httptools')}",
        command=shlex.join([str(with_root), "-m", "bench.run", *argv]),
        method=(
            f"{args.runs} interleaved runs per cell; each run is wrk for {args.duration}s "
            f"after a {args.warmup}s warm-up, 1 wrk thread, `--latency`."
        ),
        pinning=[
            f"workers={w}: servers on CPU {p.server_cpus}, wrk on CPU {p.wrk_cpus}"
            for w, p in pins.items()
        ],
        commands=commands,
        wrk_example=shlex.join(example),
        scenarios=[(n, SCENARIOS[n].meaning) for n in args.scenarios],
        servers=args.servers,
        failures=[f"{name} w{w}: {why}" for (name, w), why in bench.failures.items()],
        cut=bench.cut,
    )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = _parse_args(args_list)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            _progress(f"bench: {tool} not found (make bench installs wrk; taskset is util-linux)")
            return 2
    bench = Bench(args)
    _progress(f"bench: {bench.total} wrk runs, about {bench.estimate_s() / 60:.0f} min; logs in {bench.logs}")
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.cut = "interrupted by the user"
    rows = report.aggregate(bench.samples)
    text = report.document(rows, _meta(bench, args_list), Path(args.chart).name)
    print(text)
    Path(args.out).write_text(text)
    Path(args.json).write_text(json.dumps([dataclasses.asdict(s) for s in bench.samples], indent=1))
    if rows:
        report.chart(rows, args.scenarios, args.servers, Path(args.chart))
    _progress(f"bench: wrote {args.out}, {args.chart}, {args.json}")
    return 1 if bench.failures or bench.cut else 0


if __name__ == "__main__":
    sys.exit(main())
