"""State one worker shares between all its connections.

Rules: built once per worker after the app is loaded; connections read it on the hot path,
so what they need per request is pre-computed here (the Date/Server header block, the
scope's constant parts). Only worker.py mutates the draining flag and the date block.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.accesslog import AccessLogger
from server.proxy import ProxyTrust
from server.settings import WorkerSettings
from server.types import ASGIApp

ASGI_INFO = {"version": "3.0", "spec_version": "2.3"}
# RFC 9110 IMF-fixdate names, spelled out: strftime's %a and %b follow the C locale, which
# the app may change, and email.utils would cost its import at every start.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
H2C_UPGRADE = frozenset((b"h2c",))


class Connection(Protocol):
    """What the worker asks of every live connection, HTTP/1.1 or WebSocket."""

    def check_deadline(self, now: float) -> None: ...
    def abort(self) -> None: ...


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
    requests: int = 0
    connections: set[Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # The Upgrade tokens HTTP/1.1 hands over: WebSocket, and h2c on cleartext listeners.
    upgrades: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        settings = self.settings
        h2c = settings.http2.enabled and settings.tls is None
        self.upgrades = settings.ws.upgrades | H2C_UPGRADE if h2c else settings.ws.upgrades
        self.root_path = self.settings.root_path
        self.root_path_bytes = self.settings.root_path.encode("utf-8")
        self.date_block = date_block(self.settings.server_header)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.check_idle()

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.check_idle()

    def check_idle(self) -> None:
        if self.draining and not self.connections and not self.tasks:
            self.idle.set()
