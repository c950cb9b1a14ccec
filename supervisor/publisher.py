"""What outsiders see of the master's loop: the status file, and sd_notify's states,
STATUS= and WATCHDOG=1.

Rules: no decisions (state.step() says when the master is ready, reloading or stopping);
arbiter.py calls notify() for each Notify action and publish() after each Tick. The status
file and STATUS= change only when the fleet's shape does or memory was just measured, never
for each heartbeat's counters. WATCHDOG=1 is sent from the loop itself, so a loop that
stops turning is what systemd sees. The notifier and pidfile are read from Resources at
each call: a failed USR2 upgrade gives the pidfile back its own name. snapshot() turns the
master's state into the mapping `serve status` shows (status.py writes it to disk), with
the latest reload's outcome: monotonic times become Unix timestamps so another process can
compute ages and `serve reload` can tell a reload that started after its signal.
"""

from __future__ import annotations

import logging
import os
import time

from serve.supervisor.actions import Notify
from serve.supervisor.fleet import RUNNING, ReloadRecord, SupervisorState, by_pid, status_text
from serve.supervisor.resources import Resources
from serve.supervisor.status import status_path, write_status

logger = logging.getLogger("serve.master")


class Publisher:
    def __init__(self, resources: Resources) -> None:
        self._res = resources
        self._started_at = time.time()
        self._shape: tuple[object, ...] = ()
        self._measured = False
        self._watchdog_at = 0.0

    def next_deadline(self) -> float | None:
        """When the next WATCHDOG=1 is due; None when systemd watches no watchdog."""
        notifier = self._res.notifier
        if notifier is not None and notifier.watchdog_interval_s:
            return self._watchdog_at
        return None

    def measured(self) -> None:
        """Memory was just probed: the next publish() writes the new figures."""
        self._measured = True

    def notify(self, action: Notify) -> None:
        notifier = self._res.notifier
        if notifier is None:
            return
        if action.kind == "ready":
            notifier.ready(action.text)
        elif action.kind == "reloading":
            notifier.reloading()
        elif action.kind == "stopping":
            notifier.stopping()
        else:
            notifier.mainpid(os.getpid())

    def publish(self, state: SupervisorState) -> None:
        """Status file, STATUS= and WATCHDOG=1: what outsiders see of a healthy loop."""
        now_shape = shape(state)
        changed, self._shape = now_shape != self._shape, now_shape
        notifier = self._res.notifier
        if changed and notifier is not None:
            notifier.status(status_text(state))
        if (changed or self._measured) and self._res.pidfile is not None:
            self._write_status(state, self._res.pidfile.path)
        self._measured = False
        interval = notifier.watchdog_interval_s if notifier is not None else None
        now = time.monotonic()
        if interval and now >= self._watchdog_at and state.phase in RUNNING:
            assert notifier is not None
            notifier.watchdog()
            self._watchdog_at = now + interval

    def _write_status(self, state: SupervisorState, pidfile: str) -> None:
        offset = time.time() - time.monotonic()
        mapping = snapshot(state, os.getpid(), self._started_at, offset)
        try:
            write_status(status_path(pidfile), mapping)
        except OSError as exc:
            logger.debug("cannot write the status file: %s", exc)


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
