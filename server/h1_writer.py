"""Pure HTTP/1.1 response serialisation: status lines, framing fields, chunks, the server's
own error responses.

Rules: no IO; every function takes values and returns bytes. Status lines are pre-encoded
once; the app's header fields are checked by server.http_fields (shared with HTTP/2 and the
WebSocket handshake). server.h1_response decides the framing; this module only encodes
what it decided.
"""

from __future__ import annotations

from serve.server.errors import InvalidResponse
from serve.server.http_fields import RETRY_AFTER_S, reason

STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason(status)) for status in range(100, 600)
}
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"
# The server's own 503s say when to come back (server.http_fields.RETRY_AFTER_S).
RETRY_AFTER = b"retry-after: %d\r\n" % RETRY_AFTER_S
CONNECTION_KEEP_ALIVE = b"connection: keep-alive\r\n"
TRANSFER_CHUNKED = b"transfer-encoding: chunked\r\n"


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        raise InvalidResponse(f"invalid status code {status!r}")
    return line


def content_length(length: int) -> bytes:
    return b"content-length: %d\r\n" % length


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def error_body(status: int) -> bytes:
    """The body of the server's own `status` response: its reason phrase."""
    return reason(status) or b"Error"


def error_response(status: int, date_block: bytes, *, body: bytes | None = None) -> bytes:
    """A complete response the server itself sends (4xx/5xx), always closing the connection."""
    if body is None:
        body = error_body(status)
    return b"".join(
        (
            status_line(status),
            date_block,
            b"content-type: text/plain; charset=utf-8\r\n",
            content_length(len(body)),
            RETRY_AFTER if status == 503 else b"",
            CONNECTION_CLOSE,
            b"\r\n",
            body,
        )
    )
