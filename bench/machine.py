"""What the report says about the machine: hardware, versions, and load from other processes.

Rules:
- Read-only: nothing here starts or signals a process (wrk and h2load --version aside).
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
from dataclasses import dataclass
from importlib import metadata

import psutil

QUIET_PCT = 5.0
_WINDOW_S = 0.5


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
