"""BodyFraming with a real llhttp behind it: where a body ends, whatever the reads, what llhttp
is handed (the body's bytes, never one beyond), and the body limit before llhttp sees a byte.
"""

from __future__ import annotations

import pytest
from httptools import HttpRequestParser

from serve.server.errors import RequestRejected
from serve.server.h1_body import BodyFraming, reframed
from serve.server.settings import Limits

LENGTH_HEAD = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"


class Message:
    """llhttp's callbacks for one request: what it took as the body, and whether it ended."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def framing_after(
    head: bytes, length: int, chunked: bool, limits: Limits = Limits()
) -> tuple[BodyFraming, Message]:
    """A BodyFraming started on the body of `head`, whose llhttp has read it (as H1Parser
    leaves them)."""
    message = Message()
    llhttp = HttpRequestParser(message)
    llhttp.feed_data(head)
    framing = BodyFraming(llhttp, limits)
    framing.start(llhttp, length, chunked)
    return framing, message


def feed_split(framing: BodyFraming, wire: bytes, cut: int) -> int:
    """Feed wire as two reads cut at `cut`; where the body ended in wire (-1: never)."""
    offset = 0
    for piece in (wire[:cut], wire[cut:]):
        pos = 0
        while pos < len(piece):
            pos, done = framing.feed(piece, pos)
            if done:
                return offset + pos
        offset += len(piece)
    return -1


@pytest.mark.parametrize("cut", range(1, 10 + len(NEXT)))
def test_a_length_body_ends_at_its_last_byte_however_the_reads_split(cut: int) -> None:
    framing, message = framing_after(LENGTH_HEAD % 10, 10, chunked=False)
    assert feed_split(framing, b"0123456789" + NEXT, cut) == 10
    assert bytes(message.body) == b"0123456789"
    assert message.complete


@pytest.mark.parametrize("cut", range(1, len(CHUNKED) + len(NEXT)))
def test_a_chunked_body_ends_after_its_trailer_section_however_the_reads_split(cut: int) -> None:
    framing, message = framing_after(CHUNKED_HEAD, 0, chunked=True)
    assert feed_split(framing, CHUNKED + NEXT, cut) == len(CHUNKED)
    assert bytes(message.body) == b"hello world"
    assert message.complete


def test_a_declared_length_is_checked_against_the_body_limit() -> None:
    framing, _ = framing_after(LENGTH_HEAD % 16, 16, False, Limits(max_body_size=16))
    framing.check_length(16)
    with pytest.raises(RequestRejected) as refused:
        framing.check_length(17)
    assert refused.value.status == 413
    unlimited, _ = framing_after(LENGTH_HEAD % 1, 1, False, Limits(max_body_size=None))
    unlimited.check_length(2**40)


def test_a_chunked_body_is_refused_at_the_line_that_crosses_the_limit() -> None:
    framing, message = framing_after(CHUNKED_HEAD, 0, True, Limits(max_body_size=8))
    with pytest.raises(RequestRejected) as refused:
        feed_split(framing, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 1)
    assert refused.value.status == 413
    # The chunk before the refused line reached llhttp (and so the app) first.
    assert bytes(message.body) == b"hello"


def test_a_syntax_fault_inside_the_body_is_llhttps_400() -> None:
    framing, _ = framing_after(CHUNKED_HEAD, 0, chunked=True)
    with pytest.raises(RequestRejected) as refused:
        framing.feed(b"5\r\nhelloXX\r\n0\r\n\r\n", 0)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("length", "chunked", "wire"),
    [(5, False, b"hello"), (0, True, b"5\r\nhello\r\n0\r\n\r\n")],
)
def test_a_reframed_llhttp_reads_the_body_of_a_refused_upgrade(
    length: int, chunked: bool, wire: bytes
) -> None:
    # llhttp stops at an upgrade head and would skip its body; a fresh one is told the framing.
    message = Message()
    framing = BodyFraming(HttpRequestParser(message), Limits())
    framing.start(reframed(message, length, chunked), length, chunked)
    assert feed_split(framing, wire + NEXT, len(wire) + 1) == len(wire)
    assert bytes(message.body) == b"hello"
    assert message.complete


def test_one_framing_serves_a_connections_bodies_in_turn_whatever_their_framing() -> None:
    message = Message()
    framing = BodyFraming(HttpRequestParser(message), Limits(max_body_size=16))
    for length, chunked, wire, body in [
        (0, True, b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (4, False, b"abcd", b"abcd"),
        # A new chunked body starts its count and its line afresh: 16 more bytes fit.
        (0, True, b"10\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n", b"z" * 16),
    ]:
        llhttp = HttpRequestParser(message)
        llhttp.feed_data(CHUNKED_HEAD if chunked else LENGTH_HEAD % length)
        framing.start(llhttp, length, chunked)
        message.body.clear()
        message.complete = False
        assert feed_split(framing, wire + NEXT, len(wire) // 2) == len(wire)
        assert (bytes(message.body), message.complete) == (body, True)
