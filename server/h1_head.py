"""A request head that arrives in pieces: held until its empty line, and refused as soon as
it can no longer fit the limits, however slowly it comes (slowloris).

Rules: sans-IO, part of server.h1_parser, which takes a head that arrives whole in one read
itself (the common case) and hands this one the rest: a head split across reads, or one
after empty lines. No more than max_header_size bytes are ever held; the request line is
414 past max_request_line once its end is known or the bytes held say it must be longer,
the head 431 at max_header_size. `buffer` is shared with the parser, which reads its length
on the hot path without a call.
"""

from __future__ import annotations

import re

from serve.server.errors import RequestRejected

_EMPTY_LINES = re.compile(rb"(?:\r\n)+")


class PartialHead:
    __slots__ = ("_line_seen", "_max_head", "_max_line", "buffer")

    def __init__(self, max_line: int, max_head: int) -> None:
        self._max_line = max_line
        self._max_head = max_head
        self.buffer = bytearray()
        # The buffered bytes hold a complete request line.
        self._line_seen = False

    def add(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """Take bytes from data[pos:]: (the complete head, or None while it is incomplete;
        the position after what was taken)."""
        buf = self.buffer
        if not buf and data[pos] == 0x0D:
            # A server should ignore empty lines before a request line (RFC 9112 §2.2).
            match = _EMPTY_LINES.match(data, pos)
            if match is not None:
                return None, match.end()
        if buf == b"\r" and data[pos] == 0x0A:
            buf.clear()  # an empty line split across two reads
            return None, pos + 1
        old = len(buf)
        buf += data[pos : pos + self._max_head - old]
        end = buf.find(b"\r\n\r\n", max(0, old - 3))
        if end < 0:
            self._check(old)
            return None, len(data)
        end += 4
        head = bytes(buf[:end])
        buf.clear()
        self._line_seen = False
        return head, pos + end - old

    def _check(self, old: int) -> None:
        """Refuse a head that can no longer fit the limits, as soon as that is certain."""
        buf = self.buffer
        if not self._line_seen:
            lf = buf.find(b"\n", old)
            self._line_seen = lf >= 0
            # The request line is buf[:lf - 1] once its CRLF has arrived.
            if lf > self._max_line + 1 or (lf < 0 and len(buf) > self._max_line + 1):
                raise RequestRejected(414, "request line too long")
        if len(buf) >= self._max_head:
            raise RequestRejected(431, "request head too large")
