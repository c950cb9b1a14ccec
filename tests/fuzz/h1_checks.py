"""The framing layer's invariants, checked on any bytes split at any points.

Rules: no hypothesis and no pytest here, so the hypothesis properties and the atheris target
share one definition of "correct". Every check raises AssertionError with the evidence.

What holds for every input, however it is split:
- feed() and feed_eof() never raise; the events form
  (RequestHead BodyChunk* MessageEnd)* and then, after feed_eof(), nothing or one ParseFailed
  (a partly received request may precede it). After a ParseFailed the parser stays silent.
- A ParseFailed status is one the layer may answer with: 400, 413, 414, 431, 501 or 505.
- Every RequestHead passes the RFC 9112 checks below, made again here without the parser's
  code: a head that breaks one must have been refused, not emitted.
- A Content-Length body delivers exactly that many bytes; no body exceeds max_body_size.
- Between feeds the parser holds at most max_header_size bytes, plus the chunk-size line
  allowance (see MAX_HELD_SLACK).
- The events do not depend on where the input was split. Adjacent BodyChunks are merged
  (their cut follows the reads) and a ParseFailed is compared by its status, which must not
  change; its reason is log text, and the body scanner and llhttp word the same fault
  differently depending on which of them saw it first.
- Every feed returns: a loop is caught by pytest's timeout in the suite and by libFuzzer's
  -timeout under `make fuzz`, not by a clock here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from serve.server.events import BodyChunk, Event, MessageEnd, ParseFailed, RequestHead
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits

FAILURE_STATUSES = frozenset((400, 413, 414, 431, 501, 505))
# A chunk-size line (digits and extensions) is held whole until its LF; the layer bounds
# it by a constant of its own rather than by max_header_size.
MAX_HELD_SLACK = 4096 + 4
PROBE = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LOWER_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# RFC 9110 §5.5: field-value is VCHAR / obs-text, with SP and HTAB only inside.
_FIELD_VALUE = re.compile(
    rb"(?:[\x21-\x7e\x80-\xff](?:[\x20\x21-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?)?"
)
# RFC 9112 §3.2 and RFC 3986: visible ASCII without "#".
_TARGET = re.compile(rb"[\x21\x22\x24-\x7e]+")


def pieces(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    """data cut at the given sorted offsets (empty pieces are skipped, as reads never are)."""
    start = 0
    for cut in [*cuts, len(data)]:
        if cut > start:
            yield data[start:cut]
            start = cut


def held_bytes(parser: H1Parser) -> int:
    """The bytes a parser keeps between feeds.

    Private state, read on purpose: the public API only says whether a head is buffered
    (buffered_request_head), not how much. So every bytes-like attribute of the parser and
    of the helper objects it owns (any object of a server.* class) is counted; a renamed
    or new buffer is found the same way. httptools' own C state cannot be seen here.
    """
    total, seen = 0, set[int]()
    stack: list[object] = [parser]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for value in _attributes(obj):
            if isinstance(value, bytes | bytearray):
                total += len(value)
            elif isinstance(value, memoryview):
                total += value.nbytes
            elif type(value).__module__.startswith("serve.server."):
                stack.append(value)
    return total


def _attributes(obj: object) -> Iterator[object]:
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                yield getattr(obj, name)
    yield from getattr(obj, "__dict__", {}).values()


def normalized(events: Sequence[Event]) -> list[object]:
    """Events in a form that does not depend on the reads (see the module docstring)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, BodyChunk):
            if out and isinstance(out[-1], BodyChunk):
                out[-1] = BodyChunk(out[-1].data + event.data)
            elif event.data:
                out.append(BodyChunk(event.data))
        elif isinstance(event, ParseFailed):
            out.append(("ParseFailed", event.status))
        else:
            out.append(event)
    return out


def run(data: bytes, cuts: Sequence[int], limits: Limits) -> list[Event]:
    """Feed data in pieces, then end it; check every invariant; return all the events."""
    parser = H1Parser(limits)
    bound = limits.max_header_size + MAX_HELD_SLACK
    events: list[Event] = []
    for piece in pieces(data, cuts):
        events += parser.feed(piece)
        held = held_bytes(parser)
        assert held <= bound, f"parser holds {held} bytes, over {bound}"
        if events and isinstance(events[-1], ParseFailed):
            break
    buffered = parser.buffered_request_head
    end = parser.feed_eof()
    if buffered:
        assert end and isinstance(end[0], ParseFailed), "a buffered head ended without a 400"
    events += end
    if any(isinstance(event, ParseFailed) for event in events):
        assert parser.feed(PROBE) == [], "a failed parser produced events"
        assert not parser.buffered_request_head
    assert parser.feed_eof() == [], "a second feed_eof produced events"
    check_sequence(events, limits)
    return events


@dataclass
class _Message:
    head: RequestHead
    length: int | None
    body: int = 0


def check_sequence(events: Sequence[Event], limits: Limits) -> None:
    """The event grammar, each head's validity and each body's size."""
    message: _Message | None = None
    closed = False
    for index, event in enumerate(events):
        if isinstance(event, ParseFailed):
            assert index == len(events) - 1, f"events after a ParseFailed: {events[index:]}"
            assert event.status in FAILURE_STATUSES, event
            return
        if isinstance(event, RequestHead):
            assert message is None, "a RequestHead inside a message"
            assert not closed, "a request after one that closes the connection"
            message = _Message(event, check_head(event, limits))
        elif isinstance(event, BodyChunk):
            assert message is not None and message.head.has_body, "a body without a head"
            assert event.data, "an empty BodyChunk"
            message.body += len(event.data)
            if limits.max_body_size is not None:
                assert message.body <= limits.max_body_size, "body over max_body_size"
            if message.length is not None:
                assert message.body <= message.length, "more body than Content-Length"
        else:
            assert isinstance(event, MessageEnd), f"an event the grammar lacks: {event}"
            assert message is not None, "a MessageEnd without a head"
            if message.length is not None:
                assert message.body == message.length, "body shorter than Content-Length"
            closed = not message.head.keep_alive
            message = None
    assert message is None, "the input ended inside a message without a ParseFailed"


def check_head(head: RequestHead, limits: Limits) -> int | None:
    """RFC 9112 rules a head must meet; return its Content-Length (None when chunked)."""
    assert _TOKEN.fullmatch(head.method.encode("latin-1")), head.method
    assert head.method != "CONNECT", "CONNECT reached the app"
    assert head.http_version in ("1.0", "1.1"), head.http_version
    assert _TARGET.fullmatch(head.target), head.target
    line = len(head.method) + len(head.target) + len(" HTTP/1.1") + 1
    assert line <= limits.max_request_line, "request line over the limit"
    assert len(head.headers) <= limits.max_headers, "too many fields"
    # The fewest bytes such a head can take: "name:value" lines, and the empty line.
    size = line + 2 + sum(len(name) + len(value) + 3 for name, value in head.headers) + 2
    assert size <= limits.max_header_size, "head over max_header_size"
    if head.target.startswith(b"/"):
        path, _, query = head.target.partition(b"?")
        assert (head.raw_path, head.query_string) == (path, query), head
    fields: dict[bytes, list[bytes]] = {}
    for name, value in head.headers:
        assert _LOWER_TOKEN.fullmatch(name), name
        assert _FIELD_VALUE.fullmatch(value), value
        fields.setdefault(name, []).append(value)
    return _check_framing(head, fields)


def _check_framing(head: RequestHead, fields: dict[bytes, list[bytes]]) -> int | None:
    http11 = head.http_version == "1.1"
    hosts = fields.get(b"host", [])
    assert len(hosts) == 1 if http11 else len(hosts) <= 1, "Host count"
    options = [
        option.strip(b" \t") for option in b",".join(fields.get(b"connection", [])).split(b",")
    ]
    options = [option.lower() for option in options]
    expected = b"close" not in options and (http11 or b"keep-alive" in options)
    assert head.keep_alive == expected, "keep_alive disagrees with version and Connection"
    lengths = fields.get(b"content-length", [])
    codings = fields.get(b"transfer-encoding", [])
    assert len(lengths) <= 1 and all(value.isdigit() for value in lengths), lengths
    assert not (lengths and codings), "Content-Length with Transfer-Encoding"
    if codings:
        assert http11 and len(codings) == 1, "Transfer-Encoding outside one 1.1 field"
        assert codings[0].lower() == b"chunked", codings
        assert head.has_body
        return None
    length = int(lengths[0]) if lengths else 0
    assert head.has_body == (length > 0), "has_body disagrees with Content-Length"
    return length
