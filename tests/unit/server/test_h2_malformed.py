"""Malformed HTTP/2 requests (RFC 9113 sections 8.2 and 8.3) are refused by serve's own
checks (server.h2_scope), h2's inbound validation being off: each ends the connection with
GOAWAY PROTOCOL_ERROR, as h2's checks ended it, and never reaches the app."""

from __future__ import annotations

import h2.events as ev
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame

from serve.server.context import WorkerContext
from serve.server.h2_connection import H2Session
from serve.server.types import Receive, Scope, Send
from tests.unit.server.memory_transport import until
from tests.unit.server.test_h2_memory import Peer, serve

Fields = list[tuple[bytes, bytes]]
METHOD, SCHEME, PATH = (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")
AUTHORITY = (b":authority", b"a.example")
GOOD = [METHOD, SCHEME, PATH, AUTHORITY]

MALFORMED: dict[str, Fields] = {
    "uppercase name": [*GOOD, (b"X-Name", b"1")],
    "space in a name": [*GOOD, (b"x name", b"1")],
    "colon in a name": [*GOOD, (b"x:name", b"1")],
    "DEL in a name": [*GOOD, (b"x\x7fname", b"1")],
    "empty name": [*GOOD, (b"", b"1")],
    "NUL in a value": [*GOOD, (b"x", b"a\x00b")],
    "CR in a value": [*GOOD, (b"x", b"a\rb")],
    "LF in a value": [*GOOD, (b"x", b"a\nb")],
    "leading space in a value": [*GOOD, (b"x", b" a")],
    "trailing tab in a value": [*GOOD, (b"x", b"a\t")],
    "connection": [*GOOD, (b"connection", b"close")],
    "keep-alive": [*GOOD, (b"keep-alive", b"5")],
    "proxy-connection": [*GOOD, (b"proxy-connection", b"close")],
    "transfer-encoding": [*GOOD, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GOOD, (b"upgrade", b"websocket")],
    "TE other than trailers": [*GOOD, (b"te", b"gzip")],
    "pseudo-header after a regular field": [METHOD, SCHEME, AUTHORITY, (b"x", b"1"), PATH],
    "repeated pseudo-header": [*GOOD, (b":path", b"/again")],
    "unknown pseudo-header": [*GOOD, (b":custom", b"1")],
    ":status in a request": [*GOOD, (b":status", b"200")],
    ":protocol without CONNECT": [*GOOD, (b":protocol", b"websocket")],
    "no :method": [SCHEME, PATH, AUTHORITY],
    "no :scheme": [METHOD, PATH, AUTHORITY],
    "no :path": [METHOD, SCHEME, AUTHORITY],
    "empty :path": [METHOD, SCHEME, (b":path", b""), AUTHORITY],
    "CONNECT with :path": [(b":method", b"CONNECT"), PATH, AUTHORITY],
    "neither :authority nor host": [METHOD, SCHEME, PATH],
    "two hosts": [METHOD, SCHEME, PATH, (b"host", b"a"), (b"host", b"a")],
    ":authority unlike host": [*GOOD, (b"host", b"b.example")],
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


def send_raw(peer: Peer, stream_id: int, fields: Fields, flags: list[str]) -> None:
    """A HEADERS frame the client's own h2 would not let it send."""
    block = peer.h2.encoder.encode(fields)
    peer.transport.send(HeadersFrame(stream_id, data=block, flags=flags).serialize())


async def refused(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
    await until(lambda: peer.transport.closing)
    (goaway,) = [e for e in peer.read() if isinstance(e, ev.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    assert ctx.requests == 0


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_ends_the_connection(fields: Fields) -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        send_raw(peer, 1, fields, ["END_STREAM", "END_HEADERS"])
        await refused(session, peer, ctx)

    serve(app, main)


@pytest.mark.parametrize(
    "trailer", [(b":path", b"/"), (b"X-Upper", b"1"), (b"x", b"a\rb"), (b"connection", b"close")]
)
def test_malformed_request_trailers_end_the_connection(trailer: tuple[bytes, bytes]) -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.h2.send_headers(1, [(b":method", b"POST"), SCHEME, PATH, AUTHORITY])
        peer.h2.send_data(1, b"body")
        peer.flush()
        send_raw(peer, 1, [trailer], ["END_STREAM", "END_HEADERS"])
        await until(lambda: peer.transport.closing)
        (goaway,) = [e for e in peer.read() if isinstance(e, ev.ConnectionTerminated)]
        assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR

    serve(app, main)


@pytest.mark.parametrize(
    "extra",
    [
        [(b"te", b"Trailers")],
        [(b"host", b"a.example")],
        [(b"x-empty", b"")],
        [(b"x", b"in side")],
        [(b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2")],
    ],
)
def test_well_formed_fields_are_served(extra: Fields) -> None:
    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        peer.h2.send_headers(1, [*GOOD, *extra], end_stream=True)
        peer.flush()
        await until(lambda: peer.ended(1))
        assert peer.body(1) == b"served"
        assert ctx.requests == 1

    serve(app, main)


def test_host_alone_names_the_authority() -> None:
    seen: list[Scope] = []

    async def records(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await app(scope, receive, send)

    async def main(session: H2Session, peer: Peer, ctx: WorkerContext) -> None:
        fields = [METHOD, SCHEME, PATH, (b"host", b"h.example"), (b"cookie", b"a=1")]
        peer.h2.send_headers(1, [*fields, (b"cookie", b"b=2")], end_stream=True)
        peer.flush()
        await until(lambda: peer.ended(1))
        assert (b"host", b"h.example") in seen[0]["headers"]
        assert [v for n, v in seen[0]["headers"] if n == b"cookie"] == [b"a=1; b=2"]

    serve(records, main)
