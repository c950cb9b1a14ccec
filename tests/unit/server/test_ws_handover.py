"""The hand-over from the real HTTP/1.1 connection (server.h1_connection) to a WebSocket.

A real H1Connection serves a loopback socket, as in a worker: its parser stops at the end of
a WebSocket upgrade head and the transport moves to the WebSocket side with the bytes that
followed the head; upgrades the server does not take stay plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from serve.server.context import WorkerContext
from serve.server.h1_connection import H1Connection
from serve.server.settings import WorkerSettings
from serve.server.types import Receive, Scope, Send
from serve.server.ws_settings import WSSettings
from tests.unit.server.test_ws_harness import Client, eventually, run


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """HTTP: answer with the scope type and body; WebSocket: accept and echo one message."""
    if scope["type"] == "http":
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reply = b"%s %s" % (scope["type"].encode(), body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": reply})
        return
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": message["text"]})
    await receive()


@contextlib.asynccontextmanager
async def worker(ws: WSSettings) -> AsyncIterator[tuple[WorkerContext, int]]:
    """What server.worker builds: a context and a server of H1Connections on 127.0.0.1:0."""
    ctx = WorkerContext(WorkerSettings(app=app, ws=ws), app, {}, None, None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: H1Connection(ctx), "127.0.0.1", 0)
    try:
        yield ctx, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for conn in list(ctx.connections):
            conn.abort()
        await asyncio.gather(*ctx.tasks, return_exceptions=True)


def upgrade(path: bytes = b"/", method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return (
        b"%s %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n"
        % (method, path, extra)
    )


def test_switch_moves_the_connection_and_the_early_bytes(loop_kind: str) -> None:
    early = Connection(ConnectionType.CLIENT).send(TextMessage(data="sent with the head"))

    async def main() -> None:
        async with worker(WSSettings()) as (ctx, port):
            client = await Client.open(port, extra=early)
            await client.accepted()
            assert (await client.event()) == TextMessage(data="sent with the head")
            assert [type(conn).__name__ for conn in ctx.connections] == ["WebSocketConnection"]
            await client.close()
            await eventually(lambda: not ctx.connections and not ctx.tasks)

    run(main, loop_kind)


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    response = await reader.read()
    writer.close()
    return response


@pytest.mark.parametrize(
    ("ws", "request_bytes", "expected"),
    [
        (WSSettings(mode="none"), upgrade(extra=b"Connection: close\r\n"), b"http "),
        (
            WSSettings(),
            upgrade(method=b"POST", extra=b"Content-Length: 4\r\nConnection: close\r\n") + b"body",
            b"http body",
        ),
    ],
    ids=["ws-none", "post-with-body"],
)
def test_upgrades_not_taken_stay_plain_http(
    loop_kind: str, ws: WSSettings, request_bytes: bytes, expected: bytes
) -> None:
    async def main() -> None:
        async with worker(ws) as (_, port):
            response = await exchange(port, request_bytes)
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert response.endswith(b"\r\n\r\n" + expected)

    run(main, loop_kind)


def test_upgrade_pipelined_behind_a_request_is_refused_after_it(loop_kind: str) -> None:
    async def main() -> None:
        async with worker(WSSettings()) as (_, port):
            response = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + upgrade())
            first, _, rest = response.partition(b"http ")
            assert first.startswith(b"HTTP/1.1 200 OK\r\n")
            assert rest.startswith(b"HTTP/1.1 400 ")

    run(main, loop_kind)
