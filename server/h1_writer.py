"""Pure HTTP/1.1 response serialisation.

Rules: no IO and no state; every function takes values and returns bytes. Status lines are
pre-encoded once; response headers from the app are validated here so that a CR, LF or NUL
can never split a response (RFC 9112 §2.2, response splitting). The cycle decides framing;
this module only encodes what it decided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus

# RFC 9110 §5.6.2 token characters: what a header name may contain.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: a field value may hold no CR, LF or NUL (other CTLs are obsolete but harmless).
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


class InvalidResponse(Exception):
    """The app asked for a response that cannot be encoded safely."""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


_STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)) for status in range(100, 600)
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"
CONNECTION_KEEP_ALIVE = b"connection: keep-alive\r\n"
TRANSFER_CHUNKED = b"transfer-encoding: chunked\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        raise InvalidResponse(f"invalid status code {status!r}")
    return line


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Encode app headers as `name: value\\r\\n` lines, refusing anything that could inject.

    Validation runs over the joined names and values (two scans per response, not two per
    header), since characters are what matter, not where one header ends.
    """
    parts: list[bytes] = []
    names: list[bytes] = []
    values: list[bytes] = []
    for name, value in headers:
        names.append(name)
        values.append(value)
        parts += (name, b": ", value, b"\r\n")
    if names and (b"" in names or not _TOKEN.match(b"".join(names))):
        raise InvalidResponse(f"invalid response header name in {names!r}")
    if values and _BAD_VALUE.search(b"".join(values)):
        raise InvalidResponse("response header value contains CR, LF or NUL")
    return b"".join(parts)


def content_length(length: int) -> bytes:
    return b"content-length: %d\r\n" % length


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def error_response(status: int, date_block: bytes, *, body: bytes | None = None) -> bytes:
    """A complete response the server itself sends (4xx/5xx), always closing the connection."""
    if body is None:
        body = _reason(status) or b"Error"
    return b"".join(
        (
            status_line(status),
            date_block,
            b"content-type: text/plain; charset=utf-8\r\n",
            content_length(len(body)),
            CONNECTION_CLOSE,
            b"\r\n",
            body,
        )
    )


def status_has_no_body(status: int) -> bool:
    """RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content."""
    return status < 200 or status in (204, 304)
