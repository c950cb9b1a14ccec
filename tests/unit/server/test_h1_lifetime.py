"""A closed HTTP/1.1 connection is freed as soon as the last reference to it goes, without
waiting for the cyclic collector: what it holds (its pipeline and, through it, the cycle of
its last request) must not refer back to it strongly. Before the pipeline referred back
weakly, each closed connection, with its transport and buffers, waited for the collector.
A real H1Connection serves a loopback socket, on asyncio and on uvloop, whose transports
drop their protocol once the connection is lost.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from serve.server.context import WorkerContext
from serve.server.h1_connection import H1Connection
from serve.server.settings import WorkerSettings
from serve.server.types import Receive, Scope, Send
from tests.unit.server.test_ws_harness import eventually, run


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("ending", ["connection: close", "half-close"])
def test_a_closed_connection_is_freed_without_the_cyclic_collector(
    loop_kind: str, ending: str
) -> None:
    refs: list[weakref.ref[H1Connection]] = []

    async def main() -> None:
        ctx = WorkerContext(WorkerSettings(app=app), app, {}, None, None)

        def accept() -> H1Connection:
            conn = H1Connection(ctx)
            refs.append(weakref.ref(conn))
            return conn

        loop = asyncio.get_running_loop()
        server = await loop.create_server(accept, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            if ending == "half-close":
                # The server closes once it answered: its pipeline held a way to end it.
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                writer.write_eof()
            else:
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).endswith(b"\r\n\r\nok")
            writer.close()
            await eventually(lambda: ctx.requests == 1 and not ctx.connections)
            # The transport lets go of its protocol once connection_lost has run.
            await asyncio.sleep(0)
            assert refs[0]() is None, "the closed connection is still alive"
        finally:
            server.close()

    gc.collect()
    gc.disable()
    try:
        run(main, loop_kind)
    finally:
        gc.enable()
    assert len(refs) == 1
