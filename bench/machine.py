"""What the report says about the machine: hardware, versions, and load from other processes.

Rules:
- Read-only: nothing here starts or signals a process (wrk and h2load --version aside;
  QuietRuns runs the load it is handed).
- Pinning: the load generator on the first CPU, the servers on the next ones (all of them
  when there are too few); the runner waits on the load generator's CPU.
- "Foreign" CPU is the machine's busy time (user, nice, system, irq and steal; softirq is
  left out because our own loopback traffic is accounted there) minus the CPU time of the
  processes measured (server tree, wrk, this runner). It is the noise a shared machine adds,
  in % of all CPUs, and is reported next to the results instead of being guessed at.
- The server tree's own CPU seconds over the same window give requests per CPU-second:
  what a request costs the server, which other load changes far less than requests/s.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

import psutil

QUIET_PCT = 5.0
Result = TypeVar("Result")
_WINDOW_S = 0.5
# Read once: the runner narrows its own affinity to the load generator's CPUs while it waits.
CPUS = sorted(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Pinning:
    server_cpus: str
    wrk_cpus: str


def pinning(workers: int) -> Pinning:
    """wrk on the first CPU; servers on the next `workers` CPUs, or on all when too few."""
    first, rest = CPUS[0], CPUS[1:]
    servers = rest[:workers] if len(rest) >= workers else CPUS
    return Pinning(",".join(str(c) for c in servers), str(first))


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = psutil.virtual_memory().total / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} CPUs, {mem_gib:.0f} GiB RAM, {system}"


def tool_version(command: list[str]) -> str:
    """The first line of a load generator's `--version`, without wrk's "[epoll] Copyright"."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()[:1] or [command[0]]
    return first[0].split(" [", 1)[0].strip()


def _busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.steal


def _own_s() -> float:
    """CPU seconds of this runner and its reaped children (wrk runs are reaped when done)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _tree_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class CpuUse:
    """CPU over one window: other processes' share of all CPUs, and the server tree's seconds."""

    foreign_pct: float
    server_cpu_s: float


class CpuMeter:
    """Opened before a wrk run and read after it; see the module rules for "foreign"."""

    def __init__(self, server: list[psutil.Process]) -> None:
        self._server = server
        self._start = (time.monotonic(), _busy_s(), _own_s(), _tree_s(server))

    def read(self) -> CpuUse:
        t0, busy0, own0, tree0 = self._start
        elapsed = time.monotonic() - t0
        server = _tree_s(self._server) - tree0
        foreign = (_busy_s() - busy0) - (_own_s() - own0) - server
        capacity = elapsed * (os.cpu_count() or 1)
        return CpuUse(max(0.0, foreign / capacity * 100) if capacity else 0.0, server)


def wait_for_quiet(limit_s: float) -> float:
    """Wait (up to limit_s) for a window with foreign load under QUIET_PCT; returns the last."""
    deadline = time.monotonic() + limit_s
    while True:
        window = CpuMeter([])
        time.sleep(_WINDOW_S)
        load = window.read().foreign_pct
        if load < QUIET_PCT or time.monotonic() >= deadline:
            return load


class QuietRuns:
    """Measured runs redone while other processes took CPU during them, and waits for a
    quiet moment, all within a budget of seconds: on a machine that is never quiet they
    stop helping and only make the run late."""

    def __init__(self, budget_s: float, wait_limit_s: float, retries: int) -> None:
        self.budget_s = budget_s
        self._wait_limit_s = wait_limit_s
        self._retries = retries

    def wait(self) -> None:
        if self.budget_s > 0:
            started = time.monotonic()
            wait_for_quiet(min(self._wait_limit_s, self.budget_s))
            self.budget_s -= time.monotonic() - started

    def measure(
        self, server: list[psutil.Process], run: Callable[[], Result], run_s: float
    ) -> tuple[Result, CpuUse, int]:
        """`run`'s result with the quietest CPU use of its tries, and how many there were.
        The choice looks only at the other load, never at the result."""
        best: tuple[Result, CpuUse] | None = None
        tries = 0
        while best is None or (
            best[1].foreign_pct >= QUIET_PCT and tries <= self._retries and self.budget_s > 0
        ):
            if tries:
                self.wait()
                self.budget_s -= run_s
            tries += 1
            meter = CpuMeter(server)
            result = run()
            cpu = meter.read()
            if best is None or cpu.foreign_pct < best[1].foreign_pct:
                best = (result, cpu)
        return best[0], best[1], tries
