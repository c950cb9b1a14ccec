"""Overload shedding driven by how long requests wait before the worker takes them up
(CoDel-style).

Rules: one LoadShedder per worker when `shedding` is on; it alone sets ctx.shedding, which
the connections read before starting an app (WorkerContext.shed: HTTP/1.1 and HTTP/2
alike; WebSocket handshakes and requests already running are never shed). Two waits are
measured, because an overloaded worker queues in two places:
- the event loop's lag: a probe timer due every `probe_s` notes how late it runs, which is
  how long bytes that have just arrived on an open connection wait before they are read;
- the accept queue: libuv takes few connections per loop iteration, so under load new
  connections wait in the kernel's backlog while the loop itself looks punctual. Each
  accepted TCP connection reports (TCP_INFO's last_data_recv, one getsockopt) how long its
  data has waited in the kernel; a probe takes the least wait of those accepted since the
  last one, CoDel's "standing queue": one quick accept means the queue is short.
Shedding starts once the larger of the two has stayed over `target_s` for `interval_s`,
and stops at the first probe that finds it under target, so that the worker serves at the
rate it can while what it cannot serve is answered at once (503, Retry-After) instead of
waiting seconds. As in CoDel, a wait back over target within `interval_s` of the last stop
resumes shedding at once: the overload is still there. An episode (logged once when it
starts, once when it ends) lasts until the waits have stayed under target for `interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Protocol

from server.settings import SheddingSettings
from server.stats import SHED, STATS

logger = logging.getLogger("serve")

MIN_PROBE_S = 0.005
# struct tcp_info (linux/tcp.h): tcpi_last_data_recv, in milliseconds, is its 14th field.
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52


class Flag(Protocol):
    """What the shedder sets and connections read: the worker's context."""

    shedding: bool


class LoadShedder:
    __slots__ = (
        "_above_since",
        "_calm_since",
        "_due",
        "_episode_began",
        "_episode_shed",
        "_loop",
        "_queued",
        "_timer",
        "ctx",
        "interval_s",
        "probe_s",
        "target_s",
    )

    def __init__(self, ctx: Flag, settings: SheddingSettings, loop: asyncio.AbstractEventLoop):
        self.ctx = ctx
        self.target_s = settings.target_s
        self.interval_s = settings.interval_s
        self.probe_s = max(MIN_PROBE_S, min(settings.target_s / 2, settings.interval_s / 4))
        self._loop = loop
        self._above_since: float | None = None
        # When shedding last stopped within the current episode; None outside one.
        self._calm_since: float | None = None
        self._episode_began = 0.0
        self._episode_shed = 0
        # The least accept-queue wait since the last probe; None: no connection accepted.
        self._queued: float | None = None
        self._due = loop.time() + self.probe_s
        self._timer = loop.call_at(self._due, self._probe)

    @property
    def in_episode(self) -> bool:
        return self.ctx.shedding or self._calm_since is not None

    def stop(self) -> None:
        self._timer.cancel()
        self.ctx.shedding = False

    def accepted(self, transport: asyncio.BaseTransport) -> None:
        """A connection was accepted: note how long its data waited in the kernel."""
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family == socket.AF_UNIX:
            return
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        except OSError:
            return
        (waited_ms,) = _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)
        waited = waited_ms / 1000
        if self._queued is None or waited < self._queued:
            self._queued = waited

    def _probe(self) -> None:
        now = self._loop.time()
        wait = now - self._due
        if self._queued is not None:
            wait = max(wait, self._queued)
            self._queued = None
        if wait > self.target_s:
            self._over(now)
        else:
            self._under(now)
        self._due = now + self.probe_s
        self._timer = self._loop.call_at(self._due, self._probe)

    def _over(self, now: float) -> None:
        if self._above_since is None:
            self._above_since = now
        if self.ctx.shedding:
            return
        if self._calm_since is not None:
            self._calm_since = None
        elif now - self._above_since >= self.interval_s:
            self._episode_began, self._episode_shed = now, STATS.overload[SHED]
            logger.warning(
                "shedding load: requests have waited over %g s for %g s; "
                "new requests get 503 until the wait falls back",
                self.target_s,
                now - self._above_since,
            )
        else:
            return
        self.ctx.shedding = True

    def _under(self, now: float) -> None:
        self._above_since = None
        if self.ctx.shedding:
            self.ctx.shedding = False
            self._calm_since = now
        elif self._calm_since is not None and now - self._calm_since >= self.interval_s:
            self._calm_since = None
            logger.warning(
                "load shedding ended after %.1f s: %d requests answered 503",
                now - self._episode_began,
                STATS.overload[SHED] - self._episode_shed,
            )
