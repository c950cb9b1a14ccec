"""Inputs the fuzzers found, each reduced to its smallest form and kept as a plain test.

Each test states the property it pins (split invariance, limit boundaries) or the known
llhttp limitation it documents; the input is fed whole and then in the pieces that broke it.
"""

from __future__ import annotations

from serve.server.events import Event, ParseFailed
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits
from tests.fuzz.h1_checks import normalized, run

CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def fed(data: bytes, cuts: list[int], limits: Limits) -> list[object]:
    return normalized(run(data, cuts, limits))


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def test_trailer_section_at_the_limit_is_accepted_however_the_last_crlf_arrives() -> None:
    # A trailer section of exactly max_header_size bytes fits. It must still fit when the
    # CR and the LF of the empty line that ends it come in two reads: the held CR is the
    # end of the section, not one byte too many.
    limits = Limits(max_header_size=256)
    trailer = b"T: " + b"x" * 251 + b"\r\n"
    assert len(trailer) == 256
    data = CHUNKED + b"0\r\n" + trailer + b"\r\n"
    assert kinds(H1Parser(limits).feed(data)) == ["RequestHead", "MessageEnd"]
    assert fed(data, [len(data) - 1], limits) == fed(data, [], limits)


def test_a_bad_chunk_line_over_the_body_limit_gets_one_status_however_split() -> None:
    # The chunk size is over max_body_size and the line is malformed after it. Whole, the
    # size check answered 413 before llhttp saw the line; split inside the line, llhttp saw
    # the bad byte first and answered 400. The status must not depend on the reads.
    limits = Limits(max_body_size=16)
    for line in (b"100\rx\r\n", b"100;\x01\r\n"):
        data = CHUNKED + line
        assert fed(data, [len(data) - 2], limits) == fed(data, [], limits), line


def test_a_bad_trailer_line_over_the_limit_gets_one_status_however_split() -> None:
    # Same race in the trailer section: the size check (431) against llhttp's field syntax
    # check (400) on a trailer name holding a control byte.
    limits = Limits(max_header_size=64)
    data = CHUNKED + b"0\r\nT\x01" + b"x" * 80 + b"\r\n\r\n"
    cut = len(CHUNKED) + 5
    assert fed(data, [cut], limits) == fed(data, [], limits)


def test_transfer_encoding_chunked_with_trailing_htab_is_refused() -> None:
    """A known limitation of llhttp's strict mode, not an RFC-justified choice.

    RFC 9110 §5.5: the OWS (SP or HTAB) around a field value is not part of it, so
    "chunked<HTAB>" is "chunked". llhttp accepts a trailing SP but refuses a trailing HTAB
    ("Request has invalid `Transfer-Encoding`"), and it parses the raw head, so the value
    cannot be trimmed before it sees it. The outcome is safe: a 400 and close, nothing
    reaches the app and the framing is never read two ways.
    """
    body = b"5\r\nhello\r\n0\r\n\r\n"
    events = H1Parser(Limits()).feed(CHUNKED.replace(b"chunked", b"chunked ") + body)
    assert kinds(events) == ["RequestHead", "BodyChunk", "MessageEnd"]
    for te in (b"chunked\t", b"chunked \t"):
        parser = H1Parser(Limits())
        events = parser.feed(CHUNKED.replace(b"chunked", te) + body)
        assert kinds(events) == ["ParseFailed"], (te, events)
        assert isinstance(events[0], ParseFailed) and events[0].status == 400
        # The parser is dead: the connection is closed, later bytes are never read.
        assert parser.feed(CHUNKED + body) == [] and parser.feed_eof() == []
