"""The real HTTP/2 session (H2Session, its streams, cycles and ending) driven over an
in-memory transport, with the h2 library as an independent client: no socket, no process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from hyperframe.frame import PingFrame

from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.flow import FlowControl
from serve.server.h2_connection import H2Session
from serve.server.h2_ending import Phase
from serve.server.settings import WorkerSettings
from serve.server.types import ASGIApp, Receive, Scope, Send
from tests.unit.server.memory_transport import MemoryTransport, until


class CountingTransport(MemoryTransport):
    """Counts the writes the session makes, for the batching of its writer."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__(protocol)
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        super().write(data)


class Peer:
    """The client: an h2 connection whose bytes go through the transport."""

    def __init__(self, transport: MemoryTransport, window: int = 65535) -> None:
        self.transport = transport
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.events: list[ev.Event] = []

    def flush(self) -> None:
        self.transport.send(self.h2.data_to_send())

    def request(self, stream_id: int, path: bytes, method: bytes = b"GET") -> None:
        headers = [(b":method", method), (b":path", path), (b":scheme", b"http")]
        self.h2.send_headers(stream_id, [*headers, (b":authority", b"a")], end_stream=True)
        self.flush()

    def read(self) -> list[ev.Event]:
        new = self.h2.receive_data(self.transport.take())
        self.events += new
        return new

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            e.data or b""
            for e in self.events
            if isinstance(e, ev.DataReceived) and e.stream_id == stream_id
        )

    def received(self, stream_id: int) -> int:
        """Body bytes of the stream so far, after reading what was written."""
        self.read()
        return len(self.body(stream_id))

    def ended(self, stream_id: int) -> bool:
        self.read()
        return any(isinstance(e, ev.StreamEnded) and e.stream_id == stream_id for e in self.events)


Main = Callable[[H2Session, Peer, WorkerContext], Awaitable[None]]


def serve(app: ASGIApp, main: Main, window: int = 65535) -> None:
    async def run() -> None:
        ctx = WorkerContext(WorkerSettings(app=app), app, {}, None, None)
        transport = CountingTransport(asyncio.Protocol())
        info = ConnectionInfo.of(transport, None)
        session = H2Session(ctx, transport, FlowControl(transport), info)
        session.attach()
        session.begin(b"")
        peer = Peer(transport, window)
        peer.flush()
        peer.read()
        await main(session, peer, ctx)
        transport.abort()

    asyncio.run(run())


async def by_path(scope: Scope, receive: Receive, send: Send) -> None:
    status = 204 if scope["path"] == "/empty" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_concurrent_streams_are_answered_each_on_its_own() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.request(1, b"/one")
        peer.request(3, b"/two")
        await until(lambda: peer.ended(1) and peer.ended(3))
        assert (peer.body(1), peer.body(3)) == (b"/one", b"/two")
        statuses = [
            dict(e.headers)[b":status"] for e in peer.events if isinstance(e, ev.ResponseReceived)
        ]
        assert statuses == [b"200", b"200"]
        assert ctx.requests == 2
        assert not session.streams

    serve(by_path, main)


def test_a_response_without_a_body_ends_its_stream_at_once() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.request(1, b"/empty")
        await until(lambda: peer.ended(1))
        assert peer.body(1) == b""

    serve(by_path, main)


def test_a_shut_window_holds_the_app_until_the_client_opens_it() -> None:
    progress: list[int] = []

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(4):
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            progress.append(i)
        await send({"type": "http.response.body", "body": b""})

    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.request(1, b"/")
        # A window of 1500 bytes: the second message fills it, the app waits in send().
        await until(lambda: len(progress) == 1 and session.writer.outbound.sending)
        stream = session.streams.open[1]
        assert stream.flow.write_paused
        await until(lambda: peer.received(1) == 1500)
        assert len(progress) == 1
        peer.h2.increment_flow_control_window(10_000, stream_id=1)
        peer.h2.increment_flow_control_window(10_000)
        peer.flush()
        await until(lambda: peer.ended(1))
        assert len(peer.body(1)) == 4000
        assert progress == [0, 1, 2, 3]

    serve(stream, main, window=1500)


def test_a_stream_the_client_resets_is_a_disconnect_for_its_app() -> None:
    heard: list[str] = []

    async def waits_for_the_client(scope: Scope, receive: Receive, send: Send) -> None:
        heard.append((await receive())["type"])
        heard.append((await receive())["type"])

    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        headers = [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http")]
        peer.h2.send_headers(1, [*headers, (b":authority", b"a")])
        peer.h2.send_data(1, b"part")
        peer.flush()
        await until(lambda: heard == ["http.request"])
        peer.h2.reset_stream(1)
        peer.flush()
        await until(lambda: heard == ["http.request", "http.disconnect"])
        await until(lambda: not ctx.tasks)
        assert not session.streams

    serve(waits_for_the_client, main)


def test_the_drain_ends_an_idle_connection_with_goaway() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.request(1, b"/one")
        await until(lambda: peer.ended(1))
        ctx.draining = True
        session.check_deadline(10.0)
        await until(lambda: peer.transport.buffer)
        (goaway,) = peer.read()
        assert isinstance(goaway, ev.ConnectionTerminated)
        assert goaway.last_stream_id == 1

    serve(by_path, main)


def test_the_settings_advertise_the_configured_limits() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        remote = peer.h2.remote_settings
        http2 = ctx.settings.http2
        assert remote[SettingCodes.MAX_CONCURRENT_STREAMS] == http2.max_concurrent_streams
        assert remote[SettingCodes.INITIAL_WINDOW_SIZE] == http2.initial_window_size

    serve(by_path, main)


def test_responses_completed_in_one_loop_turn_leave_in_one_write() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        for stream_id in (1, 3, 5):
            peer.h2.send_headers(stream_id, [*GET, (b":path", b"/%d" % stream_id)], True)
        peer.flush()
        transport = session.transport
        assert isinstance(transport, CountingTransport)
        writes = transport.writes
        await until(lambda: peer.ended(1) and peer.ended(3) and peer.ended(5))
        assert transport.writes == writes + 1
        assert [peer.body(i) for i in (1, 3, 5)] == [b"/1", b"/3", b"/5"]

    serve(by_path, main)


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")]


def test_a_request_with_an_invalid_path_gets_400_without_the_app() -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.h2.send_headers(1, [*GET, (b":path", b"no-slash")], end_stream=True)
        peer.flush()
        await until(lambda: peer.ended(1))
        (response,) = [e for e in peer.events if isinstance(e, ev.ResponseReceived)]
        assert dict(response.headers)[b":status"] == b"400"
        assert called == []
        assert not session.streams

    serve(app, main)


def test_a_declared_body_over_max_body_size_gets_413_and_its_stream_is_stopped() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        size = b"%d" % ((ctx.settings.limits.max_body_size or 0) + 1)
        headers = [*GET, (b":path", b"/"), (b":method", b"POST"), (b"content-length", size)]
        peer.h2.send_headers(1, headers[1:])
        peer.flush()
        await until(lambda: any(isinstance(e, ev.StreamReset) for e in peer.read()))
        (response,) = [e for e in peer.events if isinstance(e, ev.ResponseReceived)]
        assert dict(response.headers)[b":status"] == b"413"
        assert not session.streams and ctx.requests == 0

    serve(by_path, main)


def test_after_the_last_goaway_nothing_more_is_written() -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        ctx.draining = True
        peer.request(1, b"/one")
        await until(lambda: peer.ended(1))
        session.check_deadline(10.0)
        await until(lambda: peer.transport.buffer)
        assert isinstance(peer.read()[-1], ev.ConnectionTerminated)
        # The client's h2 has stopped at the GOAWAY: a PING written beside it.
        peer.transport.send(PingFrame(0, opaque_data=b"12345678").serialize())
        session.writer.write_out()
        assert peer.transport.buffer == b""
        assert session.ending.phase is Phase.LINGERING

    serve(by_path, main)


def test_a_whole_body_larger_than_the_window_waits_for_it() -> None:
    async def whole(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"y" * 3000})

    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.request(1, b"/")
        await until(lambda: peer.received(1) == 1500)
        assert not peer.ended(1) and session.streams
        peer.h2.increment_flow_control_window(10_000, stream_id=1)
        peer.h2.increment_flow_control_window(10_000)
        peer.flush()
        await until(lambda: peer.ended(1))
        assert peer.body(1) == b"y" * 3000
        assert ctx.requests == 1 and not session.streams

    serve(whole, main, window=1500)
