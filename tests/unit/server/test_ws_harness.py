"""Harness for the WebSocket unit tests (no tests here): a loopback server and a wsproto client.

The server side is what a worker runs: an asyncio server on 127.0.0.1:0 whose protocol
parses the upgrade request with the real H1Parser and hands the transport to
server.ws_handover.take_over, exactly as server.h1_connection does. A sweep task calls
check_deadline on every connection, as the worker's once-a-second tick does (faster here).
The client is wsproto (with h11 for the handshake): an implementation independent of the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import uvloop
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.extensions import Extension

from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.events import RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits, WorkerSettings
from serve.server.types import ASGIApp
from serve.server.ws_handover import take_over
from serve.server.ws_settings import WSSettings

SWEEP_INTERVAL_S = 0.02


class Front(asyncio.Protocol):
    """The HTTP/1.1 side of the hand-over: read one request head, then switch protocols."""

    def __init__(self, ctx: WorkerContext, settings: WSSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.parser = H1Parser(Limits())
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but provide its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head_bytes, rest = self.buffer[: end + 4], self.buffer[end + 4 :]
        (head, *_) = self.parser.feed(head_bytes)
        assert isinstance(head, RequestHead), head
        take_over(
            self.ctx,
            self.transport,
            self.flow,
            head,
            info=ConnectionInfo.of(self.transport, None),
            data=rest,
        )

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The async wait_until: poll `predicate` until it is truthy, or fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


async def _sweep(ctx: WorkerContext) -> None:
    loop = asyncio.get_running_loop()
    while True:
        for conn in list(ctx.connections):
            conn.check_deadline(loop.time())
        await asyncio.sleep(SWEEP_INTERVAL_S)


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, settings: WSSettings | None = None, *, access_log: bool = False
) -> AsyncIterator[tuple[WorkerContext, int]]:
    ws = settings or WSSettings()
    ctx = WorkerContext(WorkerSettings(app=app, ws=ws), app, {"shared": 1}, None, None)
    loop = asyncio.get_running_loop()
    fronts: list[Front] = []

    def accept() -> Front:
        fronts.append(Front(ctx, ws))
        return fronts[-1]

    server = await loop.create_server(accept, "127.0.0.1", 0)
    sweeper = loop.create_task(_sweep(ctx))
    try:
        yield ctx, server.sockets[0].getsockname()[1]
    finally:
        sweeper.cancel()
        server.close()
        for front in fronts:
            front.transport.abort()
        for task in list(ctx.tasks):
            task.cancel()
        await asyncio.gather(sweeper, *ctx.tasks, return_exceptions=True)
        await server.wait_closed()


class Client:
    """A WebSocket client over a real socket, driven one event at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.eof = False

    @classmethod
    async def open(
        cls,
        port: int,
        target: str = "/",
        *,
        subprotocols: list[str] | None = None,
        extensions: list[Extension] | None = None,
        extra: bytes = b"",
    ) -> Client:
        """Connect and send the handshake (plus `extra` bytes in the same write)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        request = Request(
            host="127.0.0.1",
            target=target,
            subprotocols=subprotocols or [],
            extensions=extensions or [],
        )
        writer.write(client.ws.send(request) + extra)
        return client

    async def event(self) -> Event:
        while not self.pending:
            if self.eof:
                raise EOFError("the server closed the connection")
            data = await self.reader.read(65536)
            self.eof = not data
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def accepted(self) -> AcceptConnection:
        event = await self.event()
        assert isinstance(event, AcceptConnection), event
        return event

    async def rejected(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The denial response: status, headers and the whole body."""
        event = await self.event()
        assert isinstance(event, RejectConnection), event
        body = b""
        if event.has_body:
            while True:
                part = await self.event()
                assert isinstance(part, RejectData)
                body += part.data
                if part.body_finished:
                    break
        return event.status_code, list(event.headers), body

    async def closed(self) -> CloseConnection:
        """Skip messages and pings until the server's close frame; return it."""
        while True:
            event = await self.event()
            if isinstance(event, CloseConnection):
                return event

    def send(self, event: Event) -> None:
        self.writer.write(self.ws.send(event))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def run(main: Callable[[], Coroutine[Any, Any, None]], loop_kind: str) -> None:
    """Run `main()` on a fresh loop of the kind under test (the workers run uvloop)."""
    if loop_kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())
