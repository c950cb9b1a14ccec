"""What outsiders see of the master's loop: the status file, and sd_notify's states,
STATUS= and WATCHDOG=1.

Rules: no decisions (state.step() says when the master is ready, reloading or stopping);
arbiter.py calls notify() for each Notify action and publish() after each Tick. The status
file and STATUS= change only when the fleet's shape does (health.shape) or memory was just
measured, never for each heartbeat's counters. WATCHDOG=1 is sent from the loop itself,
so a loop that stops turning is what systemd sees. The notifier and pidfile are read from
Resources at each call: a failed USR2 upgrade gives the pidfile back its own name.
"""

from __future__ import annotations

import logging
import os
import time

from serve.supervisor import health
from serve.supervisor.actions import Notify
from serve.supervisor.fleet import RUNNING, SupervisorState, status_text
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
        shape = health.shape(state)
        changed, self._shape = shape != self._shape, shape
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
        snapshot = health.snapshot(state, os.getpid(), self._started_at, offset)
        try:
            write_status(status_path(pidfile), snapshot)
        except OSError as exc:
            logger.debug("cannot write the status file: %s", exc)
