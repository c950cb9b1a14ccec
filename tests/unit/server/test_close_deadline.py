"""A connection we close waits for its peer to take the unsent rest, but not forever.

A real H1Connection serves a loopback socket whose send buffer is small and fixed (accepted
sockets inherit SO_SNDBUF from the listener, and a set SO_SNDBUF is not auto-tuned), so a
client that stops reading leaves bytes in the transport: fewer than the high-water mark,
so writes never pause. The response ends, the keep-alive timeout closes the connection, and
the close cannot finish. The worker's sweep (driven here with its own clock values) aborts
it after send_timeout, which frees the socket and the bytes.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from serve.server.context import WorkerContext
from serve.server.h1_connection import H1Connection
from serve.server.settings import WorkerSettings
from serve.server.types import Receive, Scope, Send
from tests.unit.server.test_ws_harness import eventually, run

BODY = 40 * 1024  # more than both small socket buffers hold, less than the high-water mark


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x" * BODY})


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_close_the_peer_never_reads_is_aborted_after_send_timeout(loop_kind: str) -> None:
    settings = WorkerSettings(app=app, keep_alive_timeout_s=1.0, send_timeout_s=2.0)

    async def main() -> None:
        # Built on its loop, as the worker builds it.
        ctx = WorkerContext(settings, app, {}, None, None)
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        listener.bind(("127.0.0.1", 0))
        server = await loop.create_server(lambda: H1Connection(ctx), sock=listener)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            client.connect(listener.getsockname())
            client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            (conn,) = await eventually(lambda: list(ctx.connections))
            assert isinstance(conn, H1Connection)
            await eventually(lambda: ctx.requests == 1)
            assert conn.transport.get_write_buffer_size() > 0
            assert not conn.flow.write_paused
            # The sweep, once a second: idle, then past keep_alive_timeout -> close.
            now = loop.time()
            for tick in range(3):
                conn.check_deadline(now + tick)
            assert conn.transport.is_closing()
            await asyncio.sleep(0.1)
            assert conn in ctx.connections, "the close finished although nothing was read"
            # Closing, the sweep counts send_timeout from its first sight of the close.
            conn.check_deadline(now + 3)
            conn.check_deadline(now + 4)
            assert conn in ctx.connections
            conn.check_deadline(now + 5)
            await eventually(lambda: conn not in ctx.connections)
        finally:
            client.close()
            server.close()
            for open_conn in list(ctx.connections):
                open_conn.abort()

    run(main, loop_kind)
