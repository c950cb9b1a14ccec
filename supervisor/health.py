"""Looking at the workers from outside: their memory and CPU time.

Rules: this module measures, it never decides or signals. probe() reads each worker's
resident memory and CPU time through psutil (/proc) and returns a HealthSampled event for
state.step(), which compares the memory with max_worker_memory and keeps both for /metrics
and the status file; a worker that exited between the list and the read is left out (its
exit is reaped and reported separately).
"""

from __future__ import annotations

from collections.abc import Iterable

from serve.supervisor.events import HealthSampled


def probe(pids: Iterable[int]) -> HealthSampled:
    """Resident set size (bytes) and CPU seconds (user + system) of every worker in `pids`
    that still exists."""
    import psutil  # first used after the workers are up: kept off the start-up path

    rss: list[tuple[int, int]] = []
    cpu: list[tuple[int, float]] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                memory, times = process.memory_info(), process.cpu_times()
        except psutil.Error:
            continue
        rss.append((pid, memory.rss))
        cpu.append((pid, times.user + times.system))
    return HealthSampled(tuple(rss), tuple(cpu))
