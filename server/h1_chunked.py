"""Where a chunked request body ends (RFC 9112 §7.1), found without decoding it.

Rules: no IO; used by server.h1_body, which hands llhttp exactly the bytes this module
says belong to the body. Limits raise RequestRejected (or LimitAt, which says at which
offset of the read the limit takes effect).
"""

from __future__ import annotations

import re

from serve.server.errors import RequestRejected

# RFC 9112 §7.1.1: chunk-size [ chunk-ext ] CRLF, where
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
# with token names and token or quoted-string values (RFC 9110 §5.6.2, §5.6.4); BWS is
# parsed and removed (RFC 9110 §5.6.3). Matched on the line up to its LF, CR included, so a
# bare CR, a control character or an unterminated quoted value anywhere is refused.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXTENSION = (
    rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:" + _EXTENSION + rb")*\r")
# We must see the whole line to read the size, so a line longer than this is refused.
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

    It reads the chunk-size lines itself: strict llhttp refuses the whitespace the grammar
    allows around extensions, so llhttp reads each line rewritten as its size digits and
    CRLF (extensions carry nothing we use). The chunk data, the CRLF after it and the
    trailer section reach llhttp as they came, and it decodes and validates them.
    The body limit takes effect at the chunk-size line that crosses it, the trailer limit
    at the first byte past it; the CRLF closing the trailers is not counted.
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

    def scan(self, data: bytes, pos: int) -> tuple[bytes, int, int, bool]:
        """Return (line, start, end, done): llhttp is to read `line` (a chunk-size line as
        rewritten, or b"") then data[start:end]; the body takes data up to end, and ends
        there if done.

        A scan reads at most one chunk-size line, first, so the chunks before a line reach
        llhttp (and the app) even when that line is refused; the last chunk's line ends a
        scan, and the trailer section is read by the next.
        """
        n = len(data)
        if not self._left and self._trailer_bytes < 0:
            lf = data.find(b"\n", pos)
            if lf < 0:
                # The line's bytes wait here, not in llhttp, until the whole line is read.
                if len(self._line) + n - pos > _MAX_CHUNK_LINE:
                    raise RequestRejected(400, "chunk-size line too long")
                self._line += data[pos:]
                return b"", n, n, False
            text = data[pos:lf]
            if self._line:
                text = bytes(self._line) + text
                self._line.clear()
            line = self._chunk_header(text)
            if self._trailer_bytes == 0:
                return line, lf + 1, lf + 1, False
            start = pos = lf + 1
        else:
            line, start = b"", pos
        while pos < n:
            if self._left:
                step = min(self._left, n - pos)
                self._left -= step
                pos += step
                continue
            if self._trailer_bytes < 0:
                break
            pos, done = self._trailer_line(data, pos)
            if done:
                return line, start, pos, True
        return line, start, pos, False

    def _trailer_line(self, data: bytes, pos: int) -> tuple[int, bool]:
        lf = data.find(b"\n", pos)
        if lf < 0:
            self._hold(data, pos)
            return len(data), False
        line = data[pos:lf]
        held = len(self._line)
        if held:
            line = bytes(self._line) + line
            self._line.clear()
        if line == b"\r":  # the empty line that ends the trailer section
            return lf + 1, True
        self._check_trailer(len(line) + 1, pos, held)
        self._trailer_bytes += len(line) + 1
        return lf + 1, False

    def _hold(self, data: bytes, pos: int) -> None:
        held = len(self._line) + len(data) - pos
        if held > 1 or data[pos] != 0x0D:  # a lone CR may begin the closing empty line
            self._check_trailer(held, pos, len(self._line))
        self._line += data[pos:]

    def _check_trailer(self, size: int, pos: int, held: int) -> None:
        """Refuse a trailer line whose first `size` bytes (`held` of them from earlier
        reads, the rest from data[pos:]) overrun the trailer section limit."""
        room = self._max_trailers - self._trailer_bytes
        if size > room:
            # Only a held lone CR (checked once more bytes came) puts the limit before pos.
            raise LimitAt(max(pos, pos - held + room), 431, "trailer section too large")

    def _chunk_header(self, text: bytes) -> bytes:
        """The chunk-size line (without its LF) checked against the grammar; its size
        digits and CRLF, for llhttp."""
        match = _CHUNK_LINE.fullmatch(text) if len(text) <= _MAX_CHUNK_LINE else None
        if match is None:
            raise RequestRejected(400, "invalid chunk-size line")
        digits = match.group(1)
        size = int(digits, 16)
        if size > _MAX_CHUNK_SIZE:
            raise RequestRejected(400, "chunk size overflow")
        if not size:
            self._trailer_bytes = 0
        else:
            self._total += size
            if self._max_body is not None and self._total > self._max_body:
                raise RequestRejected(413, "request body too large")
            self._left = size + 2
        return digits + b"\r\n"
