"""How many connections a worker holds at once, and what gives way at the limit.

Rules: one ConnectionCap per worker, asked by every accepted connection (`admit`) once it
is counted in the worker's connections. The cap is max_connections, and never more than
the file descriptors the worker has left: RLIMIT_NOFILE less those open at boot and a
reserve for the app's own files and sockets. Over the cap the connection that has waited
longest for a request (an idle keep-alive connection, or one that never sent a byte) is
closed to make room, as nginx reuses its idle connections; with none waiting, the new
connection gets 503 and is closed. The accept itself is libuv's: it never reports EMFILE to
Python, and on EMFILE it accepts and closes every queued connection with a spare
descriptor (no spin, but each client in the backlog is reset), so the cap is how serve
keeps accept() off the OS limit. One warning per LOG_INTERVAL_S says what gave way.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable
from typing import Protocol

from server.stats import IDLE_CLOSED, REFUSED, STATS

logger = logging.getLogger("serve")

LOG_INTERVAL_S = 10.0
# Descriptors kept for what the app opens itself (files, database and upstream sockets):
# a tenth of what is left at boot, at least this many.
MIN_RESERVE_FDS = 16


class Reusable(Protocol):
    def reuse_mark(self) -> int | None: ...
    def close_idle(self) -> None: ...


def fd_budget() -> tuple[int, int] | None:
    """(connections the fd limit leaves room for, the soft RLIMIT_NOFILE); None: no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64  # no procfs: a guess on the safe side
    free = soft - in_use
    return max(1, free - max(MIN_RESERVE_FDS, free // 10)), soft


class ConnectionCap:
    __slots__ = ("_closed", "_logged_at", "_refused", "limit", "why")

    def __init__(self, limit: int, why: str) -> None:
        self.limit = limit
        self.why = why
        self._closed = self._refused = 0
        self._logged_at: float | None = None

    @classmethod
    def build(cls, max_connections: int | None) -> ConnectionCap | None:
        budget = fd_budget()
        if budget is not None and (max_connections is None or budget[0] < max_connections):
            return cls(budget[0], f"the file descriptors RLIMIT_NOFILE {budget[1]} leaves")
        if max_connections is not None:
            return cls(max_connections, "max_connections")
        return None

    def admit(self, count: int, connections: Iterable[Reusable], now: float) -> bool:
        """`count` connections are open, the new one included: True if it may stay."""
        if count <= self.limit:
            return True
        oldest: Reusable | None = None
        oldest_mark = -1
        for conn in connections:
            mark = conn.reuse_mark()
            if mark is not None and (oldest is None or mark < oldest_mark):
                oldest, oldest_mark = conn, mark
        admitted = oldest is not None
        if oldest is not None:
            oldest.close_idle()
            self._closed += 1
            STATS.overload[IDLE_CLOSED] += 1
        else:
            self._refused += 1
            STATS.overload[REFUSED] += 1
        self._log(now)
        return admitted

    def _log(self, now: float) -> None:
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL_S:
            return
        logger.warning(
            "connection limit %d (%s) reached: %d idle connections closed to make room, "
            "%d new ones refused since the last report",
            self.limit,
            self.why,
            self._closed,
            self._refused,
        )
        self._logged_at = now
        self._closed = self._refused = 0
