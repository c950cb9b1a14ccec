"""Where a request body ends: counted down from its Content-Length, or found in its chunked
framing (server.h1_chunked), and llhttp handed exactly the body's bytes, never one beyond.

Rules: sans-IO, part of server.h1_parser, which owns llhttp and its callbacks (they emit the
body chunks and note the message's end) and asks this object, read by read, how far the body
goes. The body limit (max_body_size) applies here before llhttp sees a byte: a declared
Content-Length over it is refused with the head, a chunked body at the chunk-size line that
crosses it, and the trailer section at max_header_size.
"""

from __future__ import annotations

from httptools import HttpParserError, HttpRequestParser

from serve.server.errors import RequestRejected
from serve.server.h1_chunked import ChunkedBody, LimitAt
from serve.server.settings import Limits

# llhttp skips the body of a request it takes for a protocol switch (uvicorn#2722). We
# serve such requests as plain HTTP, so a fresh parser is told the same framing by one of
# these heads and then parses the real body and whatever follows it.
_BODY_BY_LENGTH = b"PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
_BODY_CHUNKED = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


class BodyFraming:
    """The framing of the body being received: its bytes still owed, or its chunk scanner."""

    __slots__ = ("_chunks", "_current", "_left", "_limits", "_llhttp")

    def __init__(self, llhttp: HttpRequestParser, limits: Limits) -> None:
        self._llhttp = llhttp
        self._limits = limits
        # The chunk scanner, built for the first chunked body (most connections never see
        # one), and the current body's: None when it is counted by its Content-Length.
        self._chunks: ChunkedBody | None = None
        self._current: ChunkedBody | None = None
        self._left = 0

    def check_length(self, length: int) -> None:
        """A Content-Length over the body limit is refused before the request is emitted."""
        max_body = self._limits.max_body_size
        if max_body is not None and length > max_body:
            raise RequestRejected(413, "request body too large")

    def start(self, llhttp: HttpRequestParser, length: int, chunked: bool) -> None:
        """A body follows the head just given to `llhttp`, which is to read it."""
        self._llhttp = llhttp
        if chunked:
            chunks = self._chunks
            if chunks is None:
                limits = self._limits
                chunks = self._chunks = ChunkedBody(limits.max_body_size, limits.max_header_size)
            chunks.reset()
            self._current = chunks
        else:
            self._current = None
            self._left = length

    def feed(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Hand llhttp the body's bytes from data[pos:]: (where they end in data, whether the
        body ends there)."""
        chunks = self._current
        if chunks is not None:
            return self._feed_chunked(chunks, data, pos)
        n = len(data)
        end = min(n, pos + self._left)
        self._execute(data if pos == 0 and end == n else memoryview(data)[pos:end])
        self._left -= end - pos
        return end, not self._left

    def _feed_chunked(self, chunks: ChunkedBody, data: bytes, pos: int) -> tuple[int, bool]:
        try:
            line, start, end, done = chunks.scan(data, pos)
        except LimitAt as exc:
            self._execute(memoryview(data)[pos : exc.at])
            raise
        if line:
            self._execute(line)
        if end > start:
            self._execute(data if start == 0 and end == len(data) else memoryview(data)[start:end])
        return end, done

    def _execute(self, chunk: bytes | memoryview) -> None:
        try:
            self._llhttp.feed_data(chunk)
        except HttpParserError as exc:
            raise RequestRejected(400, str(exc)) from None


def reframed(protocol: object, length: int, chunked: bool) -> HttpRequestParser:
    """A fresh llhttp for `protocol`'s callbacks, told the framing of the body to come."""
    llhttp = HttpRequestParser(protocol)
    if chunked or length:
        llhttp.feed_data(_BODY_CHUNKED if chunked else _BODY_BY_LENGTH % length)
    return llhttp
