"""Looking at the workers from outside: memory probes and the status snapshot.

Rules: this module measures and describes, it never decides or signals. probe() reads each
worker's resident memory and CPU time through psutil (/proc) and returns a HealthSampled
event for state.step(), which compares the memory with max_worker_memory and keeps both for
/metrics; a worker that exited between the list and the read is left out (its exit is
reaped and reported separately). snapshot()
turns the master's state into the mapping `serve status` shows (supervisor/status.py
writes it to disk), with the latest reload's outcome: monotonic times become Unix
timestamps so another process can compute ages and `serve reload` can tell a reload that
started after its signal.
"""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.events import HealthSampled
from supervisor.fleet import ReloadRecord, SupervisorState, by_pid


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


def snapshot(
    state: SupervisorState, master_pid: int, started_at: float, wall_offset: float
) -> dict[str, object]:
    """The status mapping; `wall_offset` is time.time() - time.monotonic() right now."""
    workers: list[dict[str, object]] = [
        {
            "pid": record.pid,
            "generation": record.generation,
            "state": record.state.value,
            "started_at": round(record.started_at + wall_offset, 3),
            "rss": record.rss or None,
            "requests": record.requests,
        }
        for record in by_pid(state)
    ]
    return {
        "master_pid": master_pid,
        "generation": state.generation,
        "phase": state.phase.value,
        "started_at": round(started_at, 3),
        "workers": workers,
        "last_reload": _reload_snapshot(state.last_reload, wall_offset),
    }


def _reload_snapshot(last: ReloadRecord | None, wall_offset: float) -> dict[str, object] | None:
    if last is None:
        return None
    finished = None if last.finished is None else round(last.finished + wall_offset, 3)
    return {
        # Not rounded: `serve reload` compares it with the time it sent HUP, which may be
        # less than a millisecond earlier.
        "started_at": last.started + wall_offset,
        "finished_at": finished,
        "reason": last.reason,
        "generation": last.generation,
        "result": last.result,
        "detail": last.detail,
    }


def shape(state: SupervisorState) -> tuple[object, ...]:
    """What changes the status worth telling at once (not each heartbeat's counters)."""
    workers = tuple((r.pid, r.generation, r.state) for r in by_pid(state))
    return state.phase, state.generation, state.desired, workers, state.last_reload
