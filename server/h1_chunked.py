"""Where a chunked request body ends (RFC 9112 §7.1), found without decoding it.

Rules: no IO; used by server.h1_parser, which hands llhttp exactly the bytes this module
says belong to the body. Limits raise RequestRejected (or LimitAt, which says at which
offset of the read the limit takes effect).
"""

from __future__ import annotations

import re

from server.h1_validate import RequestRejected

# chunk-size, then the CR of CRLF or the ";" of an extension; llhttp checks the rest.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[\r;]")
# A chunk-size line is hex digits plus (rare) extensions. llhttp does not hold extensions,
# but we must see the whole line to read the size, so a line longer than this is refused.
_MAX_CHUNK_LINE = 4096
_MAX_CHUNK_SIZE = 2**64 - 1  # llhttp's own bound


class LimitAt(RequestRejected):
    """A limit refusal that takes effect at data offset `at` of the read being scanned.

    llhttp is handed the bytes before `at` first, so a syntax fault earlier in the stream
    wins: which fault is reported depends on the bytes, never on how the reads split them.
    """

    def __init__(self, at: int, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.at = at


class ChunkedBody:
    """Finds where a chunked body ends, so llhttp is never handed bytes beyond it.

    It only measures: llhttp decodes and validates the same bytes right after, so this reads
    no more than the chunk sizes, the line ends and the empty line closing the trailers.
    The body limit takes effect at the LF of the chunk-size line that crosses it, the
    trailer limit at the first byte past it; the CRLF closing the trailers is not counted.
    """

    __slots__ = ("_left", "_line", "_max_body", "_max_trailers", "_total", "_trailer_bytes")

    def __init__(self, max_body: int | None, max_trailers: int) -> None:
        self._max_body = max_body
        self._max_trailers = max_trailers
        self._line = bytearray()  # a size or trailer line split across reads
        self.reset()

    def reset(self) -> None:
        self._left = 0  # chunk data plus its CRLF still to skip
        self._line.clear()
        self._total = 0
        self._trailer_bytes = -1  # -1 until the last chunk; then the trailer section size

    def scan(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Return (end, done): data[pos:end] belongs to this body; done if it ends at end.

        A scan stops before a chunk-size line that is not the first thing it reads, so the
        chunks before it reach llhttp (and the app) even when that line is refused.
        """
        n, start = len(data), pos
        while pos < n:
            if self._left:
                step = min(self._left, n - pos)
                self._left -= step
                pos += step
                continue
            if pos > start and self._trailer_bytes < 0:
                return pos, False
            lf = data.find(b"\n", pos)
            if lf < 0:
                self._hold(data, pos)
                return n, False
            line = data[pos:lf]
            held = len(self._line)
            if held:
                line = bytes(self._line) + line
                self._line.clear()
            if self._trailer_bytes < 0:
                self._chunk_header(line, lf)
            elif line == b"\r":  # the empty line that ends the trailer section
                return lf + 1, True
            else:
                self._check_trailer(len(line) + 1, pos, held)
                self._trailer_bytes += len(line) + 1
            pos = lf + 1
        return pos, False

    def _hold(self, data: bytes, pos: int) -> None:
        held = len(self._line) + len(data) - pos
        if self._trailer_bytes < 0:
            if held > _MAX_CHUNK_LINE:
                raise RequestRejected(400, "chunk-size line too long")
        elif held > 1 or data[pos] != 0x0D:  # a lone CR may begin the closing empty line
            self._check_trailer(held, pos, len(self._line))
        self._line += data[pos:]

    def _check_trailer(self, size: int, pos: int, held: int) -> None:
        """Refuse a trailer line whose first `size` bytes (`held` of them from earlier
        reads, the rest from data[pos:]) overrun the trailer section limit."""
        room = self._max_trailers - self._trailer_bytes
        if size > room:
            # Only a held lone CR (checked once more bytes came) puts the limit before pos.
            raise LimitAt(max(pos, pos - held + room), 431, "trailer section too large")

    def _chunk_header(self, line: bytes, lf: int) -> None:
        match = _CHUNK_SIZE.match(line)
        if match is None or len(line) > _MAX_CHUNK_LINE:
            raise RequestRejected(400, "invalid chunk-size line")
        size = int(match.group(1), 16)
        if size > _MAX_CHUNK_SIZE:
            raise RequestRejected(400, "chunk size overflow")
        if not size:
            self._trailer_bytes = 0
            return
        self._total += size
        if self._max_body is not None and self._total > self._max_body:
            raise LimitAt(lf, 413, "request body too large")
        self._left = size + 2
