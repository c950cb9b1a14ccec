"""Chunk extensions against their grammar (RFC 9112 §7.1.1): every line built from it is
read, its extensions ignored; a control character anywhere after the size is refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from server.h1_parser import H1Parser
from server.settings import Limits
from tests.fuzz.h1_model import chunk_extensions
from tests.fuzz.profiles import FUZZ

HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
# CTLs but HTAB, which BWS and quoted strings allow; LF ends the line, so it is in too.
CONTROLS = [bytes([b]) for b in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F)]


def body(first: bytes, last: bytes) -> bytes:
    return b"5" + first + b"\r\nhello\r\n0" + last + b"\r\n\r\n"


@FUZZ
@given(chunk_extensions(), chunk_extensions(), st.data())
def test_lines_from_the_grammar_are_read(first: bytes, last: bytes, data: st.DataObject) -> None:
    wire = HEAD + body(first, last)
    cut = data.draw(st.integers(1, len(wire) - 1))
    parser = H1Parser(Limits())
    events = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
    assert isinstance(events[0], RequestHead)
    assert b"".join(e.data for e in events if isinstance(e, BodyChunk)) == b"hello"
    assert events[-1] == MessageEnd()


@FUZZ
@given(chunk_extensions(), st.sampled_from(CONTROLS), st.data())
def test_a_control_character_after_the_size_is_refused(
    extension: bytes, control: bytes, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(extension)))
    line = extension[:at] + control + extension[at:]
    events = H1Parser(Limits()).feed(HEAD + body(line, b""))
    last = events[-1]
    assert isinstance(last, ParseFailed) and last.status == 400, events
    assert not [e for e in events if isinstance(e, BodyChunk)]
