"""H1Parser's limits: request line, head, field count, body size and chunk framing, each
applied before the bytes reach llhttp, whole or trickled in, at the limit and one past it."""

from __future__ import annotations

from serve.server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits
from tests.unit.server.test_h1_parser import LIMITS, failure, feed_pieces, kinds, merged, splittings

SMALL = Limits(max_request_line=64, max_header_size=256, max_headers=4, max_body_size=16)


def request_line(length: int) -> bytes:
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line


def head_of_size(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: a\r\nX-Fill: "
    head = start + b"f" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


def first_failure_at(data: bytes, limits: Limits, piece: int = 1) -> tuple[int, ParseFailed]:
    """Feed data piece by piece; return how many bytes went in when ParseFailed came out."""
    parser = H1Parser(limits)
    for start in range(0, len(data), piece):
        events = parser.feed(data[start : start + piece])
        if any(isinstance(event, ParseFailed) for event in events):
            assert parser.feed(data[start + piece :]) == []
            assert not parser.buffered_request_head
            return min(start + piece, len(data)), failure(events)
    raise AssertionError("no ParseFailed")


def test_request_line_at_the_limit_is_accepted() -> None:
    events = H1Parser(SMALL).feed(request_line(64) + b"\r\nHost: a\r\n\r\n")
    assert kinds(events) == "RequestHead MessageEnd"


def test_request_line_over_the_limit_is_414() -> None:
    data = request_line(65) + b"\r\nHost: a\r\n\r\n"
    assert failure(H1Parser(SMALL).feed(data)).status == 414
    for cuts in splittings(data):
        assert failure(feed_pieces(data, cuts, SMALL)).status == 414


def test_request_line_limit_cuts_off_a_trickled_line() -> None:
    # Once 64 + CR + one more byte are in without a LF, the line can only be too long.
    fed, failed = first_failure_at(b"GET /" + b"a" * 10_000, SMALL)
    assert (fed, failed.status) == (66, 414)


def test_head_at_the_limit_is_accepted() -> None:
    data = head_of_size(256)
    for cuts in [[], *splittings(data)]:
        assert kinds(feed_pieces(data, cuts, SMALL)) == "RequestHead MessageEnd"


def test_head_over_the_limit_is_431() -> None:
    data = head_of_size(257)
    assert failure(H1Parser(SMALL).feed(data)).status == 431
    for cuts in splittings(data):
        assert failure(feed_pieces(data, cuts, SMALL)).status == 431


def test_trickled_head_is_cut_off_at_the_limit() -> None:
    endless = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 10_000
    assert first_failure_at(endless, SMALL) == (256, ParseFailed(431, "request head too large"))
    many_lines = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10_000
    assert first_failure_at(many_lines, SMALL)[0] == 256


def test_ten_megabyte_head_is_refused_after_the_limit() -> None:
    endless = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * (10 * 1024 * 1024)
    # Fed in 1 KiB reads, the failure comes with the read that reaches the 64 KiB limit.
    assert first_failure_at(endless, LIMITS, piece=1024) == (
        65536,
        ParseFailed(431, "request head too large"),
    )
    assert failure(H1Parser(LIMITS).feed(endless)).status == 431


def test_header_count_limit() -> None:
    fields = b"Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
    ok = H1Parser(SMALL).feed(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert kinds(ok) == "RequestHead MessageEnd"
    over = H1Parser(SMALL).feed(b"GET / HTTP/1.1\r\n" + fields + b"D: 4\r\n\r\n")
    assert failure(over) == ParseFailed(431, "too many header fields")


def test_content_length_over_the_limit_is_413_before_any_body() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n"
    assert H1Parser(SMALL).feed(head) == [ParseFailed(413, "request body too large")]
    ok = H1Parser(SMALL).feed(head.replace(b"17", b"16") + b"x" * 16)
    assert kinds(ok) == "RequestHead BodyChunk MessageEnd"


def test_chunked_body_over_the_limit_is_413_once_the_total_exceeds_it() -> None:
    parser = H1Parser(SMALL)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    [request] = parser.feed(head)
    assert isinstance(request, RequestHead)
    assert parser.feed(b"a\r\n0123456789\r\n") == [BodyChunk(b"0123456789")]
    assert parser.feed(b"6\r\n") == []  # 16 bytes in all: still allowed
    assert parser.feed(b"abcdef\r\n1\r\n") == [
        BodyChunk(b"abcdef"),
        ParseFailed(413, "request body too large"),
    ]


def test_no_body_limit_when_max_body_size_is_none() -> None:
    unlimited = Limits(max_body_size=None)
    body = b"x" * 200_000
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    events = H1Parser(unlimited).feed(head + body)
    assert merged(events)[1:] == [BodyChunk(body), MessageEnd()]


def test_trailer_section_over_the_head_limit_is_431() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    trailers = b"T: " + b"t" * 300 + b"\r\n\r\n"
    assert failure(H1Parser(SMALL).feed(data + trailers)).status == 431
    fed, failed = first_failure_at(data + trailers, SMALL)
    assert failed.status == 431
    assert fed <= len(data) + 257


def test_overlong_chunk_extension_is_refused() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=" + b"x" * 5000
    fed, failed = first_failure_at(data, LIMITS, piece=512)
    assert failed == ParseFailed(400, "chunk-size line too long")
    assert fed < len(data)
