"""The framing layer's bound on pipelined requests: with max_heads a feed stops before the
head that would exceed it, holds the rest unparsed, and feed(b"") goes on from there."""

from __future__ import annotations

from serve.server.events import BodyChunk, Event, MessageEnd, RequestHead
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits

GET = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"
POST = b"POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"


def paths(events: list[Event]) -> list[str]:
    return [event.path for event in events if isinstance(event, RequestHead)]


def test_a_feed_stops_after_max_heads_and_resumes_on_an_empty_feed() -> None:
    wire = b"".join((GET if i % 2 else POST) % i for i in range(10))
    parser = H1Parser(Limits(), max_heads=4)
    first = parser.feed(wire)
    assert paths(first) == ["/0", "/1", "/2", "/3"]
    # The fourth request is complete, body and end included; the fifth is not started.
    assert first[-1] == MessageEnd()
    assert parser.held
    second = parser.feed(b"")
    assert paths(second) == ["/4", "/5", "/6", "/7"]
    third = parser.feed(b"")
    assert paths(third) == ["/8", "/9"]
    assert not parser.held
    assert parser.feed(b"") == []
    unbounded = H1Parser(Limits()).feed(wire)
    assert first + second + third == unbounded


def test_bytes_read_while_holding_are_parsed_after_the_held_ones() -> None:
    parser = H1Parser(Limits(), max_heads=1)
    assert paths(parser.feed(GET % 0 + GET % 1 + b"POST /2 HTTP/1.1\r\nHost: a\r\n")) == ["/0"]
    events = parser.feed(b"Content-Length: 2\r\n\r\nhi")
    assert paths(events) == ["/1"]
    events = parser.feed(b"")
    assert paths(events) == ["/2"]
    assert BodyChunk(b"hi") in events
    assert not parser.held


def test_a_partial_head_is_never_held_back() -> None:
    parser = H1Parser(Limits(), max_heads=1)
    parser.feed(GET % 0)
    # The limit counts per feed: a new read starts a new count.
    assert paths(parser.feed(GET % 1)) == ["/1"]
    assert not parser.held
    assert parser.feed(b"GET /2 HT") == []
    assert parser.buffered_request_head
    assert not parser.held
