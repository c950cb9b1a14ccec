"""State one worker shares between all its connections.

Rules: built once per worker after the app is loaded; connections read it on the hot path,
so what they need per request is pre-computed here (the Date/Server header block, the
scope's constant parts). Only worker.py mutates the draining and orphaned flags and the date block.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from serve.server.accesslog import AccessLogger
from serve.server.capacity import ConnectionCap
from serve.server.cycle import Cycle
from serve.server.deadline import RequestDeadlines
from serve.server.proxy import ProxyTrust
from serve.server.settings import WorkerSettings
from serve.server.shedding import LoadShedder
from serve.server.stats import SHED, STATS
from serve.server.types import ASGIApp

# Spec 2.4: send() raises an OSError once the client is gone (server.errors.ClientDisconnected).
ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}
# RFC 9110 IMF-fixdate names, spelled out: strftime's %a and %b follow the C locale, which
# the app may change, and email.utils would cost its import at every start.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
H2C_UPGRADE = frozenset((b"h2c",))


class Connection(Protocol):
    """What the worker asks of every live connection, HTTP/1.1 or WebSocket."""

    def check_deadline(self, now: float) -> None: ...
    def abort(self) -> None: ...
    # server.capacity: a mark that orders idle connections oldest first (None: not idle),
    # and the close that makes room for a new connection.
    def reuse_mark(self) -> int | None: ...
    def close_idle(self) -> None: ...


def date_block(server_header: str | None, now: float | None = None) -> bytes:
    """The `date:` (and `server:`) header lines, pre-encoded; refreshed once a second."""
    t = time.gmtime(now)
    day = f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year}"
    date = f"{day} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    block = b"date: %s\r\n" % date.encode()
    if server_header:
        block += b"server: %s\r\n" % server_header.encode("latin-1")
    return block


@dataclass(eq=False)
class WorkerContext:
    settings: WorkerSettings
    app: ASGIApp
    lifespan_state: dict[str, Any]
    access_logger: AccessLogger | None
    proxy: ProxyTrust | None
    root_path: str = ""
    root_path_bytes: bytes = b""
    date_block: bytes = b""
    draining: bool = False
    # The master is gone: no reload to protect, so an idle connection closes at once.
    orphaned: bool = False
    requests: int = 0
    connections: set[Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # The Upgrade tokens HTTP/1.1 hands over: WebSocket, and h2c on cleartext listeners.
    upgrades: frozenset[bytes] = frozenset()
    # Set by server.shedding while requests wait too long: new ones are answered 503.
    shedding: bool = False
    # The shedder, told of every accepted connection; None when shedding is off.
    load: LoadShedder | None = None
    # max_connections and the fd limit; None when neither bounds the connections.
    cap: ConnectionCap | None = None
    # request_timeout's timer; None when it is off.
    deadlines: RequestDeadlines | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        h2c = settings.http2.enabled and settings.tls is None
        self.upgrades = settings.ws.upgrades | H2C_UPGRADE if h2c else settings.ws.upgrades
        self.root_path = self.settings.root_path
        self.root_path_bytes = self.settings.root_path.encode("utf-8")
        self.date_block = date_block(self.settings.server_header)
        self.cap = ConnectionCap.build(settings.max_connections)
        if settings.request_timeout_s is not None:
            loop = asyncio.get_running_loop()
            self.deadlines = RequestDeadlines(loop, settings.request_timeout_s)

    def app_started(self, cycle: Cycle, task: asyncio.Task[None]) -> None:
        """An HTTP request's app is running as `task` (HTTP/1.1 and HTTP/2 alike)."""
        cycle.task = task
        self.tasks.add(task)
        if self.deadlines is not None:
            self.deadlines.watch(cycle)

    def shed(self, cycle: Cycle) -> None:
        """While shedding (server.shedding): 503 and Retry-After instead of the app."""
        STATS.overload[SHED] += 1
        cycle.refuse(503)

    def app_finished(self, cycle: Cycle) -> None:
        """The app of `cycle` returned or raised, from inside its task."""
        if cycle.task is not None:
            self.tasks.discard(cycle.task)
            if self.deadlines is not None:
                self.deadlines.forget(cycle)
        if self.draining:
            self.check_idle()

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.check_idle()

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.check_idle()

    def check_idle(self) -> None:
        if self.draining and not self.connections and not self.tasks:
            self.idle.set()
