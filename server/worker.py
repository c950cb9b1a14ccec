"""One worker's life on its event loop: lifespan, serve, heartbeat, drain.

Rules: runs after fork inside server.entry; talks to the master only through its channel
(READY once, a heartbeat every interval, one more at once when max_requests is reached,
and a last one before exiting so the master's totals hold every response) and hears from
it only through signals (TERM/INT drain, QUIT stop, USR1 reopen the
log file), handled by loop.add_signal_handler so that nothing runs inside a signal handler.
Graceful drain follows Go: stop accepting (after taking what is queued already: see
take_queued), let every connection finish what the client may
still be sending (responses say `Connection: close`, idle ones close at their keep-alive
timeout, or at once when the master is gone), wait for the last one (an event, not a poll)
up to graceful_timeout, then abort the rest. With TLS the listeners get the context built
from this generation's certificate files, read here at boot; a connection counts from its
accept, not from the end of its handshake, so a drain never cuts a handshake under way.
Once the lifespan startup is done and before the first accept, what the worker holds is
frozen out of the cyclic collector's full collections (freeze_long_lived).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable

from serve.server import channel as ch
from serve.server.accesslog import AccessLogger
from serve.server.context import WorkerContext, date_block
from serve.server.errors import LifespanFailed
from serve.server.exitcodes import BOOT_ERROR, OK
from serve.server.h1_connection import H1Connection
from serve.server.h2_dispatch import ProtocolDispatch
from serve.server.lifespan import Lifespan
from serve.server.logs import reopen_log_files
from serve.server.proxy import ProxyTrust
from serve.server.settings import WorkerSettings
from serve.server.shedding import LoadShedder
from serve.server.stats import STATS
from serve.server.tls import TLSConfigError, build_context
from serve.server.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("serve")


class StopMode(enum.Enum):
    RUNNING = 0
    GRACEFUL = 1
    IMMEDIATE = 2


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        app: ASGIApp,
        listeners: list[socket.socket],
        channel: socket.socket,
        access: AccessLogger | None = None,
    ) -> None:
        self.settings = settings
        self.access = access
        self.app = app
        self.listeners = listeners
        self.channel = channel
        self.parent_pid = os.getppid()
        self.stop_mode = StopMode.RUNNING
        self.stop_requested = asyncio.Event()
        self.requests_reported = 0

    def report(self, message: ch.WorkerMessage) -> None:
        # A full buffer or a dead master: reports are advisory, never fatal here.
        with contextlib.suppress(OSError):
            self.channel.send(ch.encode(message))

    def request_stop(self, mode: StopMode) -> None:
        if mode.value > self.stop_mode.value:
            self.stop_mode = mode
            self.stop_requested.set()

    def install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, StopMode.GRACEFUL)
        # Ctrl-C reaches the whole foreground group; the master decides what a second one means.
        loop.add_signal_handler(signal.SIGINT, self.request_stop, StopMode.GRACEFUL)
        loop.add_signal_handler(signal.SIGQUIT, self.request_stop, StopMode.IMMEDIATE)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)

    def reopen_logs(self) -> None:
        """SIGUSR1 (the master forwards it after logrotate moved the file)."""
        if self.access is not None:
            # Lines served before the rotation belong in the rotated file.
            self.access.flush()
        try:
            reopen_log_files()
        except OSError as exc:
            logger.error("cannot reopen the log file: %s", exc)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        self.install_signals(loop)
        try:
            http2 = self.settings.http2.enabled
            tls = build_context(self.settings.tls, http2=http2) if self.settings.tls else None
        except TLSConfigError as exc:
            # The master loaded the files moments ago: they changed since, or are unreadable
            # to the user this worker runs as.
            logger.error("cannot load the TLS certificate: %s", exc)
            self.report(ch.WorkerBootFailed(BOOT_ERROR, f"TLS: {exc}"))
            return BOOT_ERROR
        lifespan = Lifespan(self.app, self.settings.lifespan, logger)
        try:
            await lifespan.startup()
        except LifespanFailed as exc:
            logger.error("lifespan startup failed: %s", exc)
            self.report(ch.WorkerBootFailed(BOOT_ERROR, f"lifespan startup failed: {exc}"))
            return BOOT_ERROR
        ctx = self.build_context(lifespan.state)
        freeze_long_lived()
        STATS.reset()
        if self.settings.shedding is not None:
            ctx.load = LoadShedder(ctx, self.settings.shedding, loop)
        factory = (lambda: ProtocolDispatch(ctx)) if http2 else (lambda: H1Connection(ctx))
        servers = await open_servers(self.listeners, factory, tls, self.settings)
        # Asked while serving: once a server is closed, uvloop's wait_closed() returns at
        # once instead of waiting for the connections it accepted.
        closed = [asyncio.ensure_future(server.wait_closed()) for server in servers]
        self.report(ch.WorkerReady())
        # The tick goes on through the drain: idle connections still need their deadlines.
        self.ticker = loop.call_later(self.settings.heartbeat_interval_s, self.tick, ctx)
        await self.stop_requested.wait()
        if self.stop_mode is StopMode.GRACEFUL:
            await take_queued(self.listeners, factory, tls, self.settings.header_timeout_s)
        for server in servers:
            server.close()
        if self.stop_mode is StopMode.GRACEFUL:
            await self.drain(ctx, closed)
            await lifespan.shutdown()
        else:
            self.abort_all(ctx)
        self.ticker.cancel()
        if ctx.load is not None:
            ctx.load.stop()
        self.report(self.heartbeat(ctx))
        return OK

    def build_context(self, state: dict[str, object]) -> WorkerContext:
        s = self.settings
        proxy = ProxyTrust(s.forwarded_allow_ips) if s.proxy_headers else None
        ctx = WorkerContext(s, self.app, state, self.access, proxy)
        if s.max_requests:
            ctx.app = self.with_request_limit(ctx)
        return ctx

    def with_request_limit(self, ctx: WorkerContext) -> ASGIApp:
        """The app, plus a report to the master the moment max_requests is reached.

        The master starts the replacement on that report; this worker serves on until the
        replacement is ready and it is asked to drain. Without the limit there is no wrapper
        and no cost per request.
        """
        app, limit = ctx.app, self.settings.max_requests
        served = 0

        async def app_with_limit(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal served
            try:
                await app(scope, receive, send)
            finally:
                served += 1
                if served == limit:
                    self.report(self.heartbeat(ctx, served))

        return app_with_limit

    def tick(self, ctx: WorkerContext) -> None:
        """Once a second: Date header, connection deadlines, heartbeat, the orphan check."""
        ctx.date_block = date_block(self.settings.server_header, time.time())
        now = asyncio.get_running_loop().time()
        for conn in list(ctx.connections):
            conn.check_deadline(now)
        self.report(self.heartbeat(ctx))
        if os.getppid() != self.parent_pid and self.stop_mode is StopMode.RUNNING:
            logger.warning("master %d is gone; draining", self.parent_pid)
            self.request_stop(StopMode.GRACEFUL)
        loop = asyncio.get_running_loop()
        self.ticker = loop.call_later(self.settings.heartbeat_interval_s, self.tick, ctx)

    def heartbeat(self, ctx: WorkerContext, requests: int = 0) -> ch.WorkerHeartbeat:
        # Counters only grow: the max_requests report may count an app call that has not
        # reached ctx.requests yet, and the next heartbeat must not report less.
        self.requests_reported = max(self.requests_reported, requests, ctx.requests)
        return ch.WorkerHeartbeat(
            self.requests_reported,
            len(ctx.connections),
            tuple(STATS.responses),
            tuple(STATS.durations),
            STATS.duration_sum,
            tuple(STATS.overload),
            ctx.load is not None and ctx.load.in_episode,
        )

    async def drain(self, ctx: WorkerContext, closed: list[asyncio.Task[None]]) -> None:
        ctx.draining = True
        if os.getppid() != self.parent_pid:
            # Nobody will serve the client's next request here: the idle wait of a drain
            # protects a reload, and with the master gone there is none.
            ctx.orphaned = True
            now = asyncio.get_running_loop().time()
            for conn in list(ctx.connections):
                conn.check_deadline(now)
        if self.access is not None:
            # What was served so far shows now, not after a drain that may last a while.
            self.access.flush()
        ctx.check_idle()
        # A SIGQUIT during the drain sets the event again and cuts the drain short.
        self.stop_requested.clear()
        settled = asyncio.ensure_future(self.settled(ctx, closed))
        waiters = {settled, asyncio.ensure_future(self.stop_requested.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self.settings.graceful_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        if not settled.done():
            logger.warning(
                "graceful stop ended with %d connections and %d tasks still open; aborting them",
                len(ctx.connections),
                len(ctx.tasks),
            )
            self.abort_all(ctx)

    async def settled(self, ctx: WorkerContext, closed: list[asyncio.Task[None]]) -> None:
        """Every connection is done, those still in their TLS handshake at the drain included:
        they join ctx.connections once it completes, while their server counted them at once.
        """
        await ctx.idle.wait()
        await asyncio.gather(*closed)

    def abort_all(self, ctx: WorkerContext) -> None:
        for conn in list(ctx.connections):
            conn.abort()
        for task in list(ctx.tasks):
            task.cancel()


def freeze_long_lived() -> None:
    """What the worker holds once the app is imported and started lives as long as it does:
    moved out of the collector's sight, a full collection walks only what requests made.

    A FastAPI app is some 60,000 tracked objects. A route whose requests outlive two young
    collections (a sync route waiting for the thread pool, a BaseHTTPMiddleware) promotes
    enough to bring a full collection every second or so, and each walked all of them with
    the loop stopped: tens of milliseconds, the p99 of such routes and up to a sixth of the
    worker's time. The import's garbage is collected first: frozen, it could never be freed.
    """
    gc.collect()
    gc.freeze()


async def open_servers(
    listeners: list[socket.socket],
    factory: Callable[[], asyncio.Protocol],
    tls: ssl.SSLContext | None,
    settings: WorkerSettings,
) -> list[asyncio.Server]:
    loop = asyncio.get_running_loop()
    return [
        await loop.create_server(
            factory,
            sock=sock,
            backlog=settings.backlog,
            ssl=tls,
            # The handshake comes before the request head and has the same deadline.
            ssl_handshake_timeout=settings.header_timeout_s if tls else None,
        )
        for sock in listeners
    ]


async def take_queued(
    listeners: list[socket.socket],
    factory: Callable[[], asyncio.Protocol],
    tls: ssl.SSLContext | None,
    handshake_timeout_s: float,
) -> None:
    """Accept what is queued on our listeners before closing them, to be served like any
    connection under a drain: a connection queued on a socket whose last descriptor closes
    is reset, and a per-slot socket (accept_balance: reuseport) retired by the master is
    closed once its worker is gone, no other worker accepting from it."""
    loop = asyncio.get_running_loop()
    accepted = []
    for sock in listeners:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                break  # BlockingIOError: nothing more queued
            accepted.append(conn)
    await asyncio.gather(
        *(
            loop.connect_accepted_socket(
                factory, conn, ssl=tls, ssl_handshake_timeout=handshake_timeout_s if tls else None
            )
            for conn in accepted
        ),
        # A client that left, or a failed handshake, costs only its own connection.
        return_exceptions=True,
    )
