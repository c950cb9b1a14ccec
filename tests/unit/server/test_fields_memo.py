"""The encoded response-fields memo (server.http_fields.ENCODED_FIELDS), and both memos
through the real HTTP/1.1 connection over an in-memory transport.

Each test gets fresh memos: what a hit returns is compared with the full encoding, a pair
that is refused is refused again, and the guard pauses under varying fields.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from serve.server import h1_parser
from serve.server import http_fields as hf
from serve.server.context import WorkerContext
from serve.server.errors import InvalidResponse
from serve.server.h1_connection import H1Connection
from serve.server.memo import AdaptiveMemo
from serve.server.settings import WorkerSettings
from serve.server.types import Receive, Scope, Send
from tests.unit.server.memory_transport import MemoryTransport, until

PLAIN = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
ONE_BYTE = [(b"content-type", b"text/plain"), (b"content-length", b"1")]
Memo = AdaptiveMemo[Any, Any]


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> Memo:
    fresh: Memo = AdaptiveMemo()
    monkeypatch.setattr(hf, "ENCODED_FIELDS", fresh)
    monkeypatch.setattr(h1_parser, "KNOWN_HEADS", AdaptiveMemo())
    return fresh


def full(headers: Any) -> hf.ResponseFields:
    """The encoding with the memo paused: computed every time."""
    saved, hf.ENCODED_FIELDS.paused = hf.ENCODED_FIELDS.paused, 2**40
    try:
        return hf.response_headers(headers)
    finally:
        hf.ENCODED_FIELDS.paused = saved


@pytest.mark.parametrize(
    "headers",
    [
        PLAIN,
        tuple(PLAIN),
        [(b"Connection", b"Close"), (b"X-A", b"1")],
        [(b"transfer-encoding", b"chunked"), (b"x-b", b"2")],
        [(b"content-length", b"3"), (b"content-length", b"3")],
        [],
    ],
)
def test_a_hit_returns_what_the_full_encoding_returns(headers: Any, memo: Memo) -> None:
    expected = full(headers)
    assert hf.response_headers(headers) == expected
    assert tuple(headers) in memo.table
    assert hf.response_headers(list(headers)) == expected


def test_a_stored_block_is_what_the_lookup_answers(memo: Memo) -> None:
    memo.put(tuple(PLAIN), (b"x-from: memo\r\n", 5, False))
    assert hf.response_headers(PLAIN) == (b"x-from: memo\r\n", 5, False)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-ok", b"1"), (b"x-bad", b"a\r\nb")],
        [(b"bad name", b"1")],
        [(b"content-length", b"1"), (b"content-length", b"2")],
        [(b"content-length", b"-1")],
        [(b"connection", b"close\n")],
    ],
)
def test_a_refused_pair_is_refused_every_time_and_never_stored(headers: Any, memo: Memo) -> None:
    for _ in range(3):
        with pytest.raises(InvalidResponse):
            hf.response_headers(headers)
    assert memo.table == {}


def test_pairs_that_cannot_be_a_key_are_encoded_every_time(memo: Memo) -> None:
    as_lists = [[b"content-type", b"text/plain"], [b"content-length", b"5"]]
    assert hf.response_headers(as_lists) == full(PLAIN)  # type: ignore[arg-type]  # ASGI allows lists
    assert hf.response_headers(iter(PLAIN)) == full(PLAIN)
    assert memo.table == {}


def test_a_long_head_is_encoded_every_time_and_never_stored(memo: Memo) -> None:
    # An app that echoes a request's value into a header: clients choose the head's size.
    echoed = [(b"content-length", b"5"), (b"x-echo", b"e" * 9000)]
    for _ in range(3):
        assert hf.response_headers(echoed) == full(echoed)
    hf.response_headers(PLAIN)
    assert list(memo.table) == [tuple(PLAIN)]


def test_the_guard_pauses_under_varying_lengths_and_probes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memo: Memo = AdaptiveMemo(window=16, pause=40)
    monkeypatch.setattr(hf, "ENCODED_FIELDS", memo)
    for size in range(16):
        hf.response_headers([(b"content-length", b"%d" % size)])
    assert memo.paused == 40 and len(memo.table) == 16
    for size in range(100, 140):
        assert hf.response_headers([(b"content-length", b"%d" % size)])[1] == size
    assert memo.paused == 0 and len(memo.table) == 16
    for _ in range(32):
        assert hf.response_headers(PLAIN) == full(PLAIN)
    assert memo.paused == 0 and tuple(PLAIN) in memo.table


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    memo: Memo = AdaptiveMemo(capacity=8, window=10**6)
    monkeypatch.setattr(hf, "ENCODED_FIELDS", memo)
    sizes = []
    for size in range(20):
        hf.response_headers([(b"content-length", b"%d" % size)])
        sizes.append(len(memo.table))
    assert max(sizes) == 8 and sizes[8] == 1


# -- both memos through the real connection ------------------------------------------------
async def mutating_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Counts the fields it was given, then changes its list as an app may."""
    body = b"%d" % len(scope["headers"])
    scope["headers"].append((b"x-added", b"by the app"))
    await send({"type": "http.response.start", "status": 200, "headers": ONE_BYTE})
    await send({"type": "http.response.body", "body": body})


def exchange(wire: bytes, requests: int) -> bytes:
    async def run() -> bytes:
        ctx = WorkerContext(WorkerSettings(app=mutating_app), mutating_app, {}, None, None)
        conn = H1Connection(ctx)
        transport = MemoryTransport(conn)
        conn.connection_made(transport)
        transport.send(wire)
        await until(lambda: ctx.requests == requests)
        await until(lambda: transport.closing)
        out = transport.take()
        transport.abort()
        return out

    return asyncio.run(run())


def without_date(wire: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"", wire)


def test_a_connection_answers_the_same_with_both_memos_hit(memo: Memo) -> None:
    get = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
    post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
    wire = get + post + get + get + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    first = without_date(exchange(wire, 5))
    assert get in h1_parser.KNOWN_HEADS.table and tuple(ONE_BYTE) in memo.table
    second = without_date(exchange(wire, 5))
    assert first == second
    # Every request saw its own fields, not the list an earlier app changed.
    assert re.findall(rb"\r\n\r\n([0-9])", second) == [b"2", b"2", b"2", b"2", b"2"]
