"""The request-head memo (server.h1_parser.KNOWN_HEADS) through the real parser and llhttp.

Each test gets a fresh memo, so what a hit returns is compared with what the same bytes
give with the memo paused (always the full parse): events, rejections and the state
llhttp is left in must not tell the two apart.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from serve.server import h1_parser
from serve.server.events import BodyChunk, Event, MessageEnd, ParseFailed, RequestHead
from serve.server.h1_parser import H1Parser, KnownHead
from serve.server.memo import AdaptiveMemo
from serve.server.settings import Limits
from tests.unit.server.test_h1_parser import INVALID, VALID, cases, merged, raw, splittings

LIMITS = Limits()
GET = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
CLOSE = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
HEAD10 = b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
WEBSOCKET = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> AdaptiveMemo[bytes, KnownHead]:
    fresh: AdaptiveMemo[bytes, KnownHead] = AdaptiveMemo()
    monkeypatch.setattr(h1_parser, "KNOWN_HEADS", fresh)
    return fresh


def unmemoized(data: bytes, limits: Limits = LIMITS, cuts: list[int] | None = None) -> Any:
    """What the full parse gives: the same feeds with the module's memo paused."""
    memo = h1_parser.KNOWN_HEADS
    saved = memo.paused
    memo.paused = 2**40
    try:
        return feed(H1Parser(limits), data, cuts)
    finally:
        memo.paused = saved


def feed(parser: H1Parser, data: bytes, cuts: list[int] | None = None) -> list[Event]:
    events: list[Event] = []
    bounds = [0, *(cuts or []), len(data)]
    for start, end in pairwise(bounds):
        events += parser.feed(data[start:end])
    return events


def heads(events: list[Event]) -> list[RequestHead]:
    return [event for event in events if isinstance(event, RequestHead)]


def test_a_hit_gives_the_same_head_with_a_fresh_field_list(memo: AdaptiveMemo[Any, Any]) -> None:
    parser = H1Parser(LIMITS)
    first = parser.feed(GET)
    assert GET in memo.table
    first_head = heads(first)[0]
    first_head.headers.append((b"x-added-by", b"the app"))
    second = parser.feed(GET)
    assert heads(second)[0].headers == [(b"host", b"h"), (b"accept", b"*/*")]
    assert heads(second)[0].headers is not heads(parser.feed(GET))[0].headers
    first_head.headers.pop()
    assert first == second == unmemoized(GET)
    assert isinstance(second[-1], MessageEnd)


def test_a_known_head_is_replayed_without_parsing(memo: AdaptiveMemo[Any, Any]) -> None:
    # A stored result that no parse of these bytes could give proves the lookup answers.
    fields = ((b"host", b"memo"),)
    memo.put(GET, (10, 1, ("GET", b"/m", "1.1", "/m", b"/m", b"", False), fields, True, False))
    head = heads(H1Parser(LIMITS).feed(GET))[0]
    assert (head.target, head.headers) == (b"/m", [(b"host", b"memo")])


@pytest.mark.parametrize("entry", cases(VALID))
def test_every_valid_corpus_request_parses_the_same_hit_or_miss(
    entry: dict[str, Any], memo: AdaptiveMemo[Any, Any]
) -> None:
    data = raw(entry)
    expected = unmemoized(data)
    assert H1Parser(LIMITS).feed(data) == expected  # miss: stores what it may
    assert H1Parser(LIMITS).feed(data) == expected  # hit where stored
    assert feed(H1Parser(LIMITS), data, list(range(1, len(data)))) == unmemoized(
        data, cuts=list(range(1, len(data)))
    )


@pytest.mark.parametrize("entry", cases(INVALID))
def test_every_invalid_corpus_request_is_refused_the_same_hit_or_miss(
    entry: dict[str, Any], memo: AdaptiveMemo[Any, Any]
) -> None:
    data = raw(entry)
    expected = unmemoized(data)
    assert isinstance(expected[-1], ParseFailed)
    assert H1Parser(LIMITS).feed(data) == expected
    assert H1Parser(LIMITS).feed(data) == expected
    # Never a failure stored: what is there parses cleanly on its own.
    for key in memo.table:
        assert not any(isinstance(event, ParseFailed) for event in unmemoized(key))


def test_a_parser_with_lower_limits_refuses_a_head_another_stored(
    memo: AdaptiveMemo[Any, Any],
) -> None:
    H1Parser(LIMITS).feed(GET)
    assert GET in memo.table
    few_fields = H1Parser(Limits(max_headers=1)).feed(GET)
    assert few_fields == [ParseFailed(431, "too many header fields")]
    short_line = H1Parser(Limits(max_request_line=10)).feed(GET)
    assert short_line == [ParseFailed(414, "request line too long")]


def test_an_upgrade_is_never_stored_and_still_switches(memo: AdaptiveMemo[Any, Any]) -> None:
    for _ in range(2):
        parser = H1Parser(LIMITS, upgrades=frozenset((b"websocket",)))
        events = parser.feed(WEBSOCKET + b"frame bytes")
        assert parser.upgraded and parser.take_remaining() == b"frame bytes"
        assert heads(events)[0].upgrade == b"websocket"
    # Refused (not in upgrades), the request is plain HTTP but still not stored.
    H1Parser(LIMITS).feed(WEBSOCKET)
    assert memo.table == {}


def test_a_stored_close_head_still_ignores_what_follows(memo: AdaptiveMemo[Any, Any]) -> None:
    H1Parser(LIMITS).feed(CLOSE)
    assert CLOSE in memo.table
    parser = H1Parser(LIMITS)
    events = parser.feed(CLOSE + GET)
    assert len(heads(events)) == 1 and not heads(events)[0].keep_alive
    assert parser.feed(GET) == []
    assert events == unmemoized(CLOSE + GET)


MIX = GET + POST + GET + CHUNKED + HEAD10 + GET + POST + HEAD10 + CHUNKED + GET + CLOSE + GET


def test_hits_misses_and_bodies_alternate_on_one_connection(
    memo: AdaptiveMemo[Any, Any],
) -> None:
    expected = unmemoized(MIX)
    assert [head.target for head in heads(expected)] == [
        b"/a?x=1", b"/p", b"/a?x=1", b"/q", b"/", b"/a?x=1", b"/p", b"/", b"/q", b"/a?x=1",
        b"/c",
    ]  # fmt: skip
    assert BodyChunk(b"abc") in expected and BodyChunk(b"hello") in expected
    for _ in range(2):  # the first pass stores, the second hits on every bodiless head
        parser = H1Parser(LIMITS)
        assert feed(parser, GET + POST) + feed(parser, MIX[len(GET + POST) :]) == expected
    assert set(memo.table) == {GET, HEAD10, CLOSE}
    # Pipelined in one feed, and split anywhere: llhttp must be between messages at a hit.
    assert H1Parser(LIMITS).feed(MIX) == expected
    for cuts in splittings(MIX):
        pieces = feed(H1Parser(LIMITS), MIX, cuts)
        assert merged(pieces) == merged(expected), cuts


def test_a_bad_body_after_a_hit_is_refused_as_before(memo: AdaptiveMemo[Any, Any]) -> None:
    bad = GET + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    H1Parser(LIMITS).feed(GET)
    events = H1Parser(LIMITS).feed(bad)
    assert events == unmemoized(bad)
    assert isinstance(events[-1], ParseFailed) and events[-1].status == 400


def test_max_heads_holds_the_rest_on_hits_as_on_misses(memo: AdaptiveMemo[Any, Any]) -> None:
    H1Parser(LIMITS).feed(GET)
    parser = H1Parser(LIMITS, max_heads=2)
    assert len(heads(parser.feed(GET * 5))) == 2
    assert parser.held
    assert len(heads(parser.feed(b""))) == 2
    assert len(heads(parser.feed(b""))) == 1 and not parser.held


def distinct(i: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: h\r\nX-Trace-Id: %08d\r\n\r\n" % i


def test_the_guard_pauses_under_distinct_heads_and_probes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memo: AdaptiveMemo[bytes, KnownHead] = AdaptiveMemo(window=16, pause=64)
    monkeypatch.setattr(h1_parser, "KNOWN_HEADS", memo)
    parser = H1Parser(LIMITS)
    for i in range(16):
        parser.feed(distinct(i))
    assert memo.paused == 64 and len(memo.table) == 16
    for i in range(16, 80):  # paused: neither looked up nor stored
        parser.feed(distinct(i))
    assert memo.paused == 0 and len(memo.table) == 16
    for i in range(80, 96):  # a probe that fails again pauses twice as long
        parser.feed(distinct(i))
    assert memo.paused == 128
    for i in range(96, 96 + 128):
        parser.feed(distinct(i))
    for _ in range(32):  # probing again: a repeating head keeps the memo on
        assert heads(parser.feed(GET))[0].target == b"/a?x=1"
    assert memo.paused == 0 and GET in memo.table
    for i in range(16):  # and the next pause is the first one again
        parser.feed(distinct(1000 + i))
    assert memo.paused == 64


def test_the_memo_is_bounded_and_cleared_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    memo: AdaptiveMemo[bytes, KnownHead] = AdaptiveMemo(capacity=8, window=10**6)
    monkeypatch.setattr(h1_parser, "KNOWN_HEADS", memo)
    parser = H1Parser(LIMITS)
    sizes = []
    for i in range(20):
        parser.feed(distinct(i))
        sizes.append(len(memo.table))
    assert max(sizes) == 8 and sizes[8] == 1
    long_head = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: " + b"c" * 1024 + b"\r\n\r\n"
    parser.feed(long_head)
    assert long_head not in memo.table
