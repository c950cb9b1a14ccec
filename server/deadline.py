"""Deadlines, once for every protocol: request_timeout's timer (RequestDeadlines), and the
waits the worker's once-a-second sweep measures (Wait: header, keep-alive and send timeouts
of HTTP/1.1 and HTTP/2 connections, and of an HTTP/2 stream's shut window).

Rules for request_timeout: the worker's context owns one RequestDeadlines when it is set
(none when it is off, so nothing is paid per request). The context reports each HTTP app
task that starts (`watch`) and each that returns (`forget`); a task still running at its
deadline has its cycle time out (server.cycle: 504 if nothing was written, else the
response is cut) and is cancelled, so the app's `finally` and `except CancelledError` run.
An app whose response is complete is left alone: what it does after (Starlette's
background tasks) is its own.
WebSocket and lifespan never come here: they have their own timeouts (a WebSocket's ping,
pong and close deadlines are instants its sweep compares, not waits). An app that blocks
the loop never lets the timer run: that stays the heartbeat's job.
Every deadline is its start plus the same timeout, so insertion order is deadline order: a
dict keeps the running cycles sorted for free and one timer, armed for the oldest, serves
them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from serve.server.cycle import Cycle, ResponseState
from serve.server.stats import STATS, TIMED_OUT

logger = logging.getLogger("serve")

_DONE = ResponseState.DONE


class Wait:
    """How long a connection (or stream) has waited in one situation, told by a `mark` that
    changes whenever the situation does (a request head arrived, writes paused): the wait
    starts at the first sweep that sees a mark, so a timer costs nothing per request."""

    __slots__ = ("_mark", "_since")

    def __init__(self) -> None:
        self._mark: Hashable | None = None
        self._since = 0.0

    def restart(self) -> None:
        """The situation changed between sweeps (writes paused or resumed)."""
        self._mark = None

    def waited(self, mark: Hashable, now: float) -> float | None:
        """Seconds since the sweep first saw `mark`; None at that first sight."""
        if mark != self._mark:
            self._mark, self._since = mark, now
            return None
        return now - self._since


class RequestDeadlines:
    __slots__ = ("_loop", "_running", "_timer", "timeout_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self.timeout_s = timeout_s
        self._running: dict[Cycle, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, cycle: Cycle) -> None:
        """The app of `cycle` started (and suspended) now."""
        deadline = self._loop.time() + self.timeout_s
        self._running[cycle] = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def forget(self, cycle: Cycle) -> None:
        """The app of `cycle` returned: its deadline no longer applies."""
        self._running.pop(cycle, None)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        running = self._running
        while running:
            cycle, deadline = next(iter(running.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            del running[cycle]
            self._time_out(cycle)

    def _time_out(self, cycle: Cycle) -> None:
        task = cycle.task
        if task is None or task.done() or cycle.response is _DONE:
            return
        STATS.overload[TIMED_OUT] += 1
        gone = cycle.disconnected
        cycle.time_out()
        scope = cycle.scope
        if gone:
            outcome = "client already gone"
        elif cycle.answer:
            outcome = f"answered {cycle.answer}"
        else:
            outcome = "response cut"
        logger.warning(
            "request_timeout (%g s): cancelled %s %s; %s",
            self.timeout_s,
            scope["method"],
            scope["path"],
            outcome,
        )
        task.cancel()
