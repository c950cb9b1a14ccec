"""State one worker shares between all its connections, and what happens to it.

Rules: built once per worker after the app is loaded; connections read it on the hot path,
so what they need per request is pre-computed here (the Date/Server header block, the
scope's constant parts). Only worker.py mutates the draining and orphaned flags and the date
block. HTTP/1.1, HTTP/2 and WebSocket change the rest only through the methods below, which
say what happened: a connection opened, handed over or closed (`connections`), an app
started or finished (`tasks`, one tracker for all three), a request finished (`requests`,
the metrics STATS and the access log: one accounting path).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from serve.server.accesslog import AccessLogger
from serve.server.allocator import give_back
from serve.server.app_run import run_app
from serve.server.capacity import ConnectionCap
from serve.server.cycle import Cycle
from serve.server.deadline import RequestDeadlines
from serve.server.proxy import ProxyTrust
from serve.server.settings import WorkerSettings
from serve.server.shedding import LoadShedder
from serve.server.stats import SHED, STATS
from serve.server.types import ASGIApp, Scope

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


class AppRun(Protocol):
    """An app call the worker tracks: an HTTP request's cycle, or a WebSocket connection."""

    task: asyncio.Task[None] | None


class Finished(Protocol):
    """A request as the accounting sees it once it is answered (server.cycle.Cycle, or a
    WebSocket handshake): `start_time` is time.perf_counter() at its head."""

    scope: Scope
    status: int
    bytes_sent: int
    start_time: float


@dataclass(slots=True)
class ServerAnswer:
    """A request whose head serve read and then answered itself in its app's place (an
    upgrade it refused, a body that broke or grew over max_body_size), as the accounting
    sees it (Finished); start_time is now unless the request's own is given."""

    scope: Scope
    status: int
    bytes_sent: int
    start_time: float = field(default_factory=time.perf_counter)


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
    loop: asyncio.AbstractEventLoop = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        h2c = settings.http2.enabled and settings.tls is None
        self.upgrades = settings.ws.upgrades | H2C_UPGRADE if h2c else settings.ws.upgrades
        self.root_path = self.settings.root_path
        self.root_path_bytes = self.settings.root_path.encode("utf-8")
        self.date_block = date_block(self.settings.server_header)
        self.cap = ConnectionCap.build(settings.max_connections)
        self.loop = asyncio.get_running_loop()
        if settings.request_timeout_s is not None:
            self.deadlines = RequestDeadlines(self.loop, settings.request_timeout_s)

    # -- connections -------------------------------------------------------------------------
    def admit(self, conn: Connection, transport: asyncio.BaseTransport, now: float) -> str | None:
        """A connection was accepted and registered: None, or the setting it must be
        refused with 503 under ("max_connections": no room; "limit_concurrency")."""
        cap = self.cap
        room = cap is None or cap.admit(len(self.connections) + 1, self.connections, now)
        self.connections.add(conn)
        if self.load is not None:
            self.load.accepted(transport)
        if not room:
            return "max_connections"
        limit = self.settings.limit_concurrency
        return None if limit is None or len(self.connections) <= limit else "limit_concurrency"

    def at_concurrency_limit(self) -> bool:
        limit = self.settings.limit_concurrency
        return limit is not None and len(self.connections) >= limit

    def connection_opened(self, conn: Connection) -> None:
        """A protocol took over a transport (HTTP/2, WebSocket) in its predecessor's place."""
        self.connections.add(conn)

    def connection_handed_over(self, conn: Connection) -> None:
        """`conn` gives its transport to a successor, registered next: no idle check between."""
        self.connections.discard(conn)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.check_idle()

    # -- apps ----------------------------------------------------------------------------------
    def start_request(self, cycle: Cycle, eager: bool) -> None:
        """Run the app for an HTTP request (HTTP/1.1 and HTTP/2 alike), or shed it.

        `eager` (3.12+): the app runs at once and a Task is only kept if it suspends.
        """
        if self.shedding:
            # server.shedding: 503 and Retry-After instead of the app; a request already
            # answered (its body broke in the read that brought its head) is left alone.
            if not cycle.disconnected:
                STATS.overload[SHED] += 1
                cycle.refuse(503)
            return
        # `eager` first: on 3.11 it is always False, and the version is then never read.
        if eager and sys.version_info >= (3, 12):
            task = asyncio.Task(run_app(self.app, cycle, self), loop=self.loop, eager_start=True)
            if task.done():
                return
        else:
            task = self.loop.create_task(run_app(self.app, cycle, self))
        # app_started, inline: this runs once per request that suspends.
        cycle.task = task
        self.tasks.add(task)
        if self.deadlines is not None:
            self.deadlines.watch(cycle)

    def app_started(self, run: AppRun, task: asyncio.Task[None]) -> None:
        """An app is running as `task`; an HTTP request's is under request_timeout."""
        run.task = task
        self.tasks.add(task)
        if self.deadlines is not None and isinstance(run, Cycle):
            self.deadlines.watch(run)

    def app_finished(self, run: AppRun) -> None:
        """The app of `run` returned or raised, from inside its task."""
        if run.task is not None:
            self.tasks.discard(run.task)
            if self.deadlines is not None and isinstance(run, Cycle):
                self.deadlines.forget(run)
        if not self.connections:
            self.check_idle()

    def finish_request(self, done: Finished) -> None:
        """A response is complete or failed: count it, time it, log it."""
        self.requests += 1
        duration_s = time.perf_counter() - done.start_time
        STATS.record(done.status, duration_s)
        if self.access_logger is not None:
            self.access_logger.log_scope(done.scope, done.status, done.bytes_sent, duration_s)

    def answered_without_head(
        self, client: tuple[str, int] | None, status: int, nbytes: int
    ) -> None:
        """serve wrote `status` where no request head was read (a malformed or oversized
        head, a connection refused over a limit): a response for the status counts and the
        access log, but not a request, and no duration."""
        STATS.record_without_head(status)
        if self.access_logger is not None:
            self.access_logger.log_without_head(client, status, nbytes)

    def check_idle(self) -> None:
        """Nothing open and no app running: the allocator's pad only pays off under load,
        so the free heap goes back to the kernel (server.allocator); a drain is done."""
        if self.connections or self.tasks:
            return
        give_back()
        if self.draining:
            self.idle.set()
