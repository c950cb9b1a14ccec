"""The real HTTP/1.1 connection (H1Connection, its parser, cycles and writer) driven over an
in-memory transport: no socket, no process. The test is the client: it sends bytes as
reads, takes what was written, and runs the worker's sweep with its own clock values."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from serve.server.context import WorkerContext
from serve.server.cycle import ResponseState
from serve.server.h1_connection import PIPELINE_MAX, H1Connection
from serve.server.settings import WorkerSettings
from serve.server.types import ASGIApp, Receive, Scope, Send
from tests.unit.server.memory_transport import MemoryTransport, until

GET = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"
Main = Callable[[H1Connection, MemoryTransport, WorkerContext], Awaitable[None]]


async def echo_path(scope: Scope, receive: Receive, send: Send) -> None:
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def serve(
    app: ASGIApp, main: Main, settings: WorkerSettings | None = None, high_water: int = 65536
) -> None:
    async def run() -> None:
        ctx = WorkerContext(settings or WorkerSettings(app=app), app, {}, None, None)
        conn = H1Connection(ctx)
        transport = MemoryTransport(conn, high_water=high_water)
        conn.connection_made(transport)
        await main(conn, transport, ctx)
        transport.abort()

    asyncio.run(run())


def statuses(wire: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", wire)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1 + GET % 2 + GET % 3)
        await until(lambda: ctx.requests == 3)
        wire = transport.take()
        assert statuses(wire) == [b"200"] * 3
        assert re.findall(rb"\r\n\r\n(/\d)", wire) == [b"/1", b"/2", b"/3"]
        assert not transport.closing

    serve(echo_path, main)


def test_a_bad_request_behind_good_ones_is_answered_after_them_then_closes() -> None:
    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1 + GET % 2 + b"GET /3 HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
        await until(lambda: transport.closing)
        wire = transport.take()
        assert statuses(wire) == [b"200", b"200", b"400"]
        assert wire.endswith(b"Bad Request")
        # The close completes once the peer has read the answers.
        await until(lambda: not ctx.connections)

    serve(echo_path, main)


def test_header_and_keep_alive_timeouts_are_the_sweeps() -> None:
    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1)
        await until(lambda: ctx.requests == 1)
        transport.take()
        # Idle: the first sweep starts the keep-alive wait, which ends 5 s later.
        conn.check_deadline(100.0)
        conn.check_deadline(104.0)
        assert not transport.closing
        # Part of a next head arrives: header_timeout (10 s) from the sweep that sees it.
        transport.send(b"GET /2 HTTP/1.1\r\n")
        conn.check_deadline(105.0)
        conn.check_deadline(114.0)
        assert not transport.closing
        conn.check_deadline(115.0)
        assert transport.closing

    settings = WorkerSettings(app=echo_path, keep_alive_timeout_s=5.0, header_timeout_s=10.0)
    serve(echo_path, main, settings)


def test_a_peer_that_stops_reading_pauses_the_app_and_is_aborted_after_send_timeout() -> None:
    chunks_sent: list[int] = []

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(10):
            # Larger than a write batch holds: each goes to the transport at once.
            await send({"type": "http.response.body", "body": b"x" * 20_000, "more_body": True})
            chunks_sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1)
        await until(lambda: transport.write_paused)
        paused_at = len(chunks_sent)
        assert paused_at < 10
        # The peer reads: the app goes on from where it waited.
        transport.take()
        await until(lambda: len(chunks_sent) > paused_at)
        await until(lambda: transport.write_paused)
        # It stops reading for good: send_timeout (3 s) after the sweep first sees it.
        conn.check_deadline(50.0)
        conn.check_deadline(52.0)
        assert not transport.aborted
        conn.check_deadline(53.0)
        assert transport.aborted
        await until(lambda: not ctx.tasks)
        assert len(chunks_sent) < 10

    serve(stream, main, WorkerSettings(app=stream, send_timeout_s=3.0), high_water=50_000)


def test_an_unread_request_body_pauses_reading_until_the_app_takes_it() -> None:
    received: list[int] = []
    gate = asyncio.Event()

    async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()
        while True:
            message = await receive()
            received.append(len(message["body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % sum(received)})

    size = 600 * 1024
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(head + b"a" * (300 * 1024))
        # Over the cycle's high-water mark with nothing consumed: reading pauses.
        await until(lambda: not transport.reading)
        gate.set()
        await until(lambda: transport.reading)
        transport.send(b"b" * (300 * 1024))
        await until(lambda: ctx.requests == 1)
        assert transport.take().endswith(b"\r\n\r\n%d" % size)

    serve(slow_reader, main)


def gated(gate: asyncio.Event, path: str = "/1") -> ASGIApp:
    """echo_path, except that the request for `path` waits for `gate` before answering."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == path:
            await gate.wait()
        await echo_path(scope, receive, send)

    return app


def test_requests_pipelined_behind_a_busy_one_pause_reading_until_their_turn() -> None:
    gate = asyncio.Event()

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1 + GET % 2 + GET % 3)
        await until(lambda: not transport.reading)
        # Nothing is answered out of order while the first request is busy.
        assert transport.take() == b""
        assert conn.reuse_mark() is None
        gate.set()
        await until(lambda: ctx.requests == 3 and transport.reading)
        assert re.findall(rb"\r\n\r\n(/\d)", transport.take()) == [b"/1", b"/2", b"/3"]
        # Idle again: the oldest-first mark is where the connection went idle.
        assert conn.reuse_mark() == 3

    serve(gated(gate), main)


def test_more_heads_than_one_read_may_start_are_held_and_answered_in_order() -> None:
    count = PIPELINE_MAX * 2 + 5

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(b"".join(GET % i for i in range(count)))
        assert conn.parser.held
        await until(lambda: ctx.requests == count, turns=20 * count)
        paths = re.findall(rb"\r\n\r\n(/\d+)", transport.take())
        assert paths == [b"/%d" % i for i in range(count)]
        assert not conn.parser.held
        assert transport.reading
        assert not transport.closing

    serve(echo_path, main)


def test_an_upgrade_pipelined_behind_a_request_is_refused_after_it() -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1 + upgrade)
        await until(lambda: transport.closing)
        wire = transport.take()
        assert statuses(wire) == [b"200", b"400"]
        assert re.findall(rb"\r\n\r\n(/\d)", wire) == [b"/1"]

    serve(echo_path, main)


CHUNKED_POST = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_bad_chunk_before_the_response_is_answered_400_and_closes() -> None:
    gate = asyncio.Event()

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(CHUNKED_POST + b"5\r\nhello\r\n")
        transport.send(b"zz\r\n")
        assert statuses(transport.take()) == [b"400"]
        assert transport.closing
        gate.set()
        await until(lambda: not ctx.tasks and not ctx.connections)

    serve(gated(gate, "/"), main)


def test_a_bad_chunk_after_the_response_started_closes_without_an_answer() -> None:
    async def answers_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(CHUNKED_POST + b"5\r\nhello\r\n")
        await until(lambda: b"early" in transport.buffer)
        transport.send(b"zz\r\n")
        assert transport.closing
        wire = transport.take()
        assert statuses(wire) == [b"200"]
        assert b"400" not in wire
        await until(lambda: not ctx.tasks and not ctx.connections)
        # The response was cut: accounted once, as the app's.
        assert ctx.requests == 1

    serve(answers_first, main)


def test_a_bad_chunk_after_the_head_was_given_but_not_written_is_answered_400() -> None:
    # http.response.start alone writes nothing (the head waits for the body), so the
    # server can still answer in the app's place, and accounts that answer only.
    async def starts_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] != "http.disconnect":
            pass

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(CHUNKED_POST + b"5\r\nhello\r\n")
        await until(lambda: conn.requests.receiving.response is ResponseState.STARTED)
        transport.send(b"zz\r\n")
        assert statuses(transport.take()) == [b"400"]
        await until(lambda: not ctx.tasks and not ctx.connections)
        assert ctx.requests == 1

    serve(starts_first, main)


def test_an_app_that_fails_before_answering_gets_500_and_the_connection_closes() -> None:
    async def fails(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("broken app")

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1 + GET % 2)
        await until(lambda: transport.closing)
        # The request behind the failed one is never started.
        assert statuses(transport.take()) == [b"500"]
        assert ctx.requests == 1

    serve(fails, main)


def test_a_request_that_asks_to_close_is_answered_then_the_connection_closes() -> None:
    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET % 2)
        await until(lambda: transport.closing)
        wire = transport.take()
        assert statuses(wire) == [b"200"]
        assert b"connection: close\r\n" in wire.lower()

    serve(echo_path, main)


def test_the_sweep_leaves_a_busy_request_alone_and_closes_an_orphans_idle_connection() -> None:
    gate = asyncio.Event()

    async def main(conn: H1Connection, transport: MemoryTransport, ctx: WorkerContext) -> None:
        transport.send(GET % 1)
        await until(lambda: ctx.tasks)
        # ACTIVE: the app's time is request_timeout's business, not the sweep's.
        conn.check_deadline(0.0)
        conn.check_deadline(1_000_000.0)
        assert not transport.closing
        gate.set()
        await until(lambda: ctx.requests == 1)
        ctx.orphaned = True
        conn.check_deadline(1_000_001.0)
        assert transport.closing

    settings = WorkerSettings(app=echo_path, keep_alive_timeout_s=5.0)
    serve(gated(gate), main, settings)
