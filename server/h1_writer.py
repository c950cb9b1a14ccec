"""Pure HTTP/1.1 response serialisation.

Rules: no IO; every function takes values and returns bytes. Status lines are pre-encoded
once; response headers from the app are validated here so that a CR, LF or NUL can never
split a response (RFC 9112 §2.2, response splitting). The only state is two bounded memo
tables of header names and values already validated. The cycle decides framing; this
module only encodes what it decided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus

# RFC 9110 §5.6.2 token characters: what a header name may contain.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: a field value may hold no CR, LF or NUL (other CTLs are obsolete but harmless).
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
# Names and values already validated (names with their lowercase form). Apps send few
# distinct names and many repeated values, so these save a regex per header; both bounded.
_MEMO_SIZE = 512
_MEMO_VALUE = 256
_NAMES: dict[bytes, bytes] = {}
_VALUES: set[bytes] = set()
# Response fields whose values decide the framing of the response.
_FRAMING_NAMES = frozenset((b"content-length", b"connection", b"transfer-encoding"))


class InvalidResponse(Exception):
    """The app asked for a response that cannot be encoded safely."""


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason(status)) for status in range(100, 600)
}
# RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
NO_BODY_STATUSES = frozenset((*range(100, 200), 204, 304))

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"
# Every 503 the server sends itself is overload (limit_concurrency, max_connections,
# shedding): RFC 9110 section 10.2.3 lets it say when to come back.
RETRY_AFTER_S = 1
RETRY_AFTER = b"retry-after: %d\r\n" % RETRY_AFTER_S
CONNECTION_KEEP_ALIVE = b"connection: keep-alive\r\n"
TRANSFER_CHUNKED = b"transfer-encoding: chunked\r\n"


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        raise InvalidResponse(f"invalid status code {status!r}")
    return line


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Encode app headers as `name: value\\r\\n` lines, refusing anything that could inject."""
    parts: list[bytes] = []
    for name, value in headers:
        if name not in _NAMES:
            _check_name(name)
        if value not in _VALUES:
            _check_value(value)
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def response_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes, int | None, bool]:
    """encode_headers for a response the server frames: (block, content_length, close).

    The Content-Length (None if absent) and whether a Connection field asks to close come
    back for the framing decision; a Transfer-Encoding field is dropped, as the server
    frames the body itself and the app's field would frame it twice.
    """
    parts: list[bytes] = []
    length = None
    close = False
    for name, value in headers:
        lname = _NAMES.get(name) or _check_name(name)
        if lname not in _FRAMING_NAMES:
            if value not in _VALUES:
                _check_value(value)
        elif lname == b"content-length":
            # Digits only, so no value check is needed; a second, different one is refused.
            if not value.isdigit() or (length is not None and int(value) != length):
                raise InvalidResponse(f"invalid Content-Length {value!r} from the app")
            length = int(value)
        elif lname == b"connection":
            _check_value(value)
            close = close or value.lower().find(b"close") >= 0
        else:
            continue
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts), length, close


def _check_name(name: bytes) -> bytes:
    """Validate a header name the first time it is seen; return it lowercased."""
    if not _TOKEN.match(name):
        raise InvalidResponse(f"invalid response header name {name!r}")
    lname = name.lower()
    if len(_NAMES) < _MEMO_SIZE:
        _NAMES[name] = lname
    return lname


def _check_value(value: bytes) -> None:
    if _BAD_VALUE.search(value):
        raise InvalidResponse("response header value contains CR, LF or NUL")
    if len(value) <= _MEMO_VALUE:
        # Cleared when full: values come and go (dates, tags), the table follows them.
        if len(_VALUES) >= _MEMO_SIZE:
            _VALUES.clear()
        _VALUES.add(value)


def content_length(length: int) -> bytes:
    return b"content-length: %d\r\n" % length


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def error_response(status: int, date_block: bytes, *, body: bytes | None = None) -> bytes:
    """A complete response the server itself sends (4xx/5xx), always closing the connection."""
    if body is None:
        body = reason(status) or b"Error"
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


def status_has_no_body(status: int) -> bool:
    return status in NO_BODY_STATUSES
