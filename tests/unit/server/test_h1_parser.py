"""H1Parser: bytes in, events out; fed whole, byte by byte and at random split points.

The corpus in tests/corpus/requests/ holds the exact bytes of each request (as latin-1
JSON strings). h11, an independent parser, must agree on which requests are valid, except
where an entry's "h11_differs" names the RFC section that allows both behaviours.
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from serve.server.events import BodyChunk, Event, MessageEnd, ParseFailed, RequestHead
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "requests"
LIMITS = Limits()


def load(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((CORPUS / f"{name}.json").read_text("utf-8"))
    return entries


VALID = load("valid")
INVALID = load("invalid")


def cases(entries: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(entry, id=entry["id"]) for entry in entries]


def raw(entry: dict[str, Any]) -> bytes:
    return str(entry["request"]).encode("latin-1")


def latin1(text: str) -> bytes:
    return text.encode("latin-1")


def expected_events(entry: dict[str, Any]) -> list[Event]:
    """The corpus entry's messages as events; path fields default to the plain target."""
    events: list[Event] = []
    for message in entry["messages"]:
        target = message["target"]
        body = message.get("body", "")
        chunks = [body] if isinstance(body, str) and body else list(body)
        upgrade = message.get("upgrade")
        events.append(
            RequestHead(
                method=message.get("method", "GET"),
                target=latin1(target),
                path=message.get("path", target),
                raw_path=latin1(message.get("raw_path", target)),
                query_string=latin1(message.get("query_string", "")),
                http_version=message.get("http_version", "1.1"),
                headers=[(latin1(name), latin1(value)) for name, value in message["headers"]],
                keep_alive=message.get("keep_alive", True),
                expect_continue=message.get("expect_continue", False),
                upgrade=None if upgrade is None else latin1(upgrade),
                has_body=message.get("has_body", bool(chunks)),
            )
        )
        events.extend(BodyChunk(latin1(chunk)) for chunk in chunks)
        events.append(MessageEnd())
    return events


def merged(events: list[Event]) -> list[Event]:
    """Join adjacent body chunks: how a body is cut depends on how the bytes arrived."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, BodyChunk) and out and isinstance(out[-1], BodyChunk):
            out[-1] = BodyChunk(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def feed_pieces(data: bytes, cuts: list[int], limits: Limits = LIMITS) -> list[Event]:
    parser = H1Parser(limits)
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        events += parser.feed(data[start:end])
    return events


def splittings(data: bytes) -> Iterator[list[int]]:
    """Byte by byte, then twenty random cuts, seeded by the data so failures reproduce."""
    yield list(range(1, len(data)))
    rng = random.Random(data)
    for _ in range(20):
        count = rng.randint(1, min(8, len(data) - 1))
        yield sorted(rng.sample(range(1, len(data)), count))


def kinds(events: list[Event]) -> str:
    return " ".join(type(event).__name__ for event in events)


def failure(events: list[Event]) -> ParseFailed:
    """The single ParseFailed that must close the event list."""
    assert events, "expected a ParseFailed event"
    last = events[-1]
    assert isinstance(last, ParseFailed), events
    assert not any(isinstance(event, ParseFailed) for event in events[:-1])
    return last


# -- the corpus ---------------------------------------------------------------------------
@pytest.mark.parametrize("entry", cases(VALID))
def test_valid_request_gives_exact_events(entry: dict[str, Any]) -> None:
    parser = H1Parser(LIMITS)
    assert parser.feed(raw(entry)) == expected_events(entry)
    assert not parser.buffered_request_head
    assert parser.feed_eof() == []


@pytest.mark.parametrize("entry", cases(VALID))
def test_valid_request_split_anywhere_gives_same_events(entry: dict[str, Any]) -> None:
    data, expected = raw(entry), merged(expected_events(entry))
    for cuts in splittings(data):
        assert merged(feed_pieces(data, cuts)) == expected, cuts


def check_rejected(entry: dict[str, Any], events: list[Event]) -> None:
    assert failure(events).status == entry["status"]
    assert not any(isinstance(event, MessageEnd) for event in events)
    if entry["where"] == "head":
        # A bad head never reaches the application, not even as a RequestHead.
        assert len(events) == 1
    else:
        assert isinstance(events[0], RequestHead)
        assert all(isinstance(event, BodyChunk) for event in events[1:-1])


@pytest.mark.parametrize("entry", cases(INVALID))
def test_invalid_request_fails_with_status(entry: dict[str, Any]) -> None:
    parser = H1Parser(LIMITS)
    check_rejected(entry, parser.feed(raw(entry)))
    # The parser is dead now: nothing more comes out of it.
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n") == []
    assert parser.feed_eof() == []
    assert not parser.buffered_request_head


@pytest.mark.parametrize("entry", cases(INVALID))
def test_invalid_request_split_anywhere_fails_the_same(entry: dict[str, Any]) -> None:
    data = raw(entry)
    for cuts in splittings(data):
        check_rejected(entry, feed_pieces(data, cuts))


def h11_accepts(data: bytes) -> bool:
    """True if h11 reads every request in data to its end, answering each with a 404."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return False
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE:
                    return True
                conn.start_next_cycle()
                if not conn.trailing_data[0]:
                    return True
    except h11.RemoteProtocolError:
        return False


@pytest.mark.parametrize("entry", cases(VALID + INVALID))
def test_h11_agrees_unless_the_difference_is_documented(entry: dict[str, Any]) -> None:
    events = H1Parser(LIMITS).feed(raw(entry))
    ours = not any(isinstance(event, ParseFailed) for event in events)
    assert ours == ("messages" in entry)
    if "h11_differs" in entry:
        assert h11_accepts(raw(entry)) != ours, "h11 agrees now: drop the h11_differs note"
    else:
        assert h11_accepts(raw(entry)) == ours


# -- connection options -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", [], True),
        ("1.1", ["keep-alive"], True),
        ("1.1", ["close"], False),
        ("1.1", ["Close"], False),
        ("1.1", ["keep-alive, close"], False),
        ("1.1", ["te, CLOSE "], False),
        ("1.1", ["keep-alive", "close"], False),
        ("1.1", ["upgrade"], True),
        ("1.1", ["closed"], True),
        ("1.0", [], False),
        ("1.0", ["keep-alive"], True),
        ("1.0", ["Keep-Alive"], True),
        ("1.0", ["te,keep-alive"], True),
        ("1.0", ["close"], False),
        ("1.0", ["keep-alive, close"], False),
        ("1.0", ["upgrade"], False),
    ],
)
def test_keep_alive_rules(version: str, connection: list[str], keep_alive: bool) -> None:
    fields = "".join(f"Connection: {value}\r\n" for value in connection)
    data = f"GET / HTTP/{version}\r\nHost: a\r\n{fields}\r\n".encode()
    head, end = H1Parser(LIMITS).feed(data)
    assert isinstance(head, RequestHead) and end == MessageEnd()
    assert head.keep_alive is keep_alive


def test_after_a_closing_request_later_bytes_are_ignored() -> None:
    parser = H1Parser(LIMITS)
    events = parser.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert kinds(events) == "RequestHead MessageEnd"
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []
    assert parser.feed(b"garbage\r\n\r\n") == []
    assert parser.feed_eof() == []


@pytest.mark.parametrize(
    ("version", "expect", "expect_continue"),
    [
        ("1.1", None, False),
        ("1.1", "100-continue", True),
        ("1.1", "100-CONTINUE", True),
        ("1.1", "something-else", False),
        ("1.0", "100-continue", False),
    ],
)
def test_expect_continue(version: str, expect: str | None, expect_continue: bool) -> None:
    field = "" if expect is None else f"Expect: {expect}\r\n"
    data = f"PUT / HTTP/{version}\r\nHost: a\r\n{field}Content-Length: 1\r\n\r\n".encode()
    [head] = H1Parser(LIMITS).feed(data)
    assert isinstance(head, RequestHead)
    assert head.expect_continue is expect_continue
    assert head.has_body


# -- pipelining and state ---------------------------------------------------------------
def test_failure_after_good_pipelined_requests_keeps_their_events() -> None:
    good = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
    )
    events = H1Parser(LIMITS).feed(good + b"GET /3 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert kinds(events) == "RequestHead MessageEnd RequestHead BodyChunk MessageEnd ParseFailed"
    assert failure(events).status == 400


def test_buffered_request_head_tracks_an_incomplete_head() -> None:
    parser = H1Parser(LIMITS)
    assert not parser.buffered_request_head
    assert parser.feed(b"\r\n") == []
    assert not parser.buffered_request_head
    assert parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\n") == []
    assert parser.buffered_request_head
    [head] = parser.feed(b"Content-Length: 4\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert not parser.buffered_request_head
    assert parser.feed(b"ab") == [BodyChunk(b"ab")]
    assert not parser.buffered_request_head
    assert parser.feed(b"cdGE") == [BodyChunk(b"cd"), MessageEnd()]
    assert parser.buffered_request_head


@pytest.mark.parametrize(
    "partial",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"G",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    ],
)
def test_eof_inside_a_request_fails(partial: bytes) -> None:
    parser = H1Parser(LIMITS)
    assert not any(isinstance(event, ParseFailed) for event in parser.feed(partial))
    assert parser.feed_eof() == [ParseFailed(400, "connection closed inside a request")]
    assert parser.feed_eof() == []
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []


@pytest.mark.parametrize("before", [b"", b"\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"])
def test_eof_between_requests_is_clean(before: bytes) -> None:
    parser = H1Parser(LIMITS)
    parser.feed(before)
    assert parser.feed_eof() == []


# -- limits ---------------------------------------------------------------------------------
def test_a_feed_keeps_no_event_once_it_returned() -> None:
    """The parser and httptools hold each other, so a parser outlives its connection until
    the cyclic GC runs: what it keeps of a feed (a whole body chunk) must be nothing."""
    parser = H1Parser(Limits())
    events = parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel")
    assert [type(event) for event in events] == [RequestHead, BodyChunk]
    del events
    assert not [obj for obj in gc.get_objects() if type(obj) is BodyChunk]


def test_requests_around_long_bodies_parse_alike_however_the_reads_split() -> None:
    # Long counted bodies among heads of every kind on one connection, however the reads
    # split them; bytes inside a body that look like a request are body.
    long_body = b"\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" * 1000
    post = b"POST /%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
    wire = b"".join((
        post % (b"long1", len(long_body), long_body),
        b"GET /get HTTP/1.1\r\nHost: a\r\n\r\n",
        post % (b"short", 5, b"hello"),
        b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nworld\r\n0\r\n\r\n",
        post % (b"long2", len(long_body), long_body),
        b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
    ))  # fmt: skip
    start = len(wire) // 3
    for cuts in ([], [start], [start, start + 1, start + 9000], list(range(4096, len(wire), 4096))):
        events = merged(feed_pieces(wire, cuts))
        heads = [e.path for e in events if isinstance(e, RequestHead)]
        assert heads == ["/long1", "/get", "/short", "/chunked", "/long2", "/last"]
        bodies = [e.data for e in events if isinstance(e, BodyChunk)]
        assert bodies == [long_body, b"hello", b"world", long_body]
        assert kinds(events).count("MessageEnd") == 6


def test_a_long_body_behind_an_upgrade_served_as_plain_http_is_read_whole() -> None:
    # llhttp stops at the upgrade head; the reframed llhttp then reads the body.
    body = b"x" * 40000
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: other\r\nConnection: upgrade\r\n"
    wire = head + b"Content-Length: 40000\r\n\r\n" + body + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    for cuts in ([], [len(head) + 30], [len(wire) - 40, len(wire) - 3]):
        events = merged(feed_pieces(wire, cuts))
        assert [e.path for e in events if isinstance(e, RequestHead)] == ["/up", "/next"]
        assert [e.data for e in events if isinstance(e, BodyChunk)] == [body]
        assert kinds(events).count("MessageEnd") == 2
