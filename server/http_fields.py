"""HTTP semantics every protocol here shares: the app's response fields, status facts, and
the Content-Length policy, for HTTP/1.1, HTTP/2 and the WebSocket handshake alike.

Rules: no IO and no framing. Response fields from the app are validated here so that a CR,
LF or NUL can never split a response (RFC 9112 section 2.2, response splitting), nor reach a
proxy that turns an HTTP/2 response back into HTTP/1.1. The only state is two bounded memo
tables of header names and values already validated. A response that breaks a rule raises
InvalidResponse (server.errors) while nothing is sent, RuntimeError into the app after.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from http import HTTPStatus

from serve.server.errors import InvalidResponse
from serve.server.memo import AdaptiveMemo

logger = logging.getLogger("serve")

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
# (block, content_length, close) of response_headers, by the app's pairs as a tuple: apps
# answer most routes with the same list, and encoding it again costs several thousand
# instructions. A varying Content-Length makes a route miss; the memo's guard pauses it then.
ResponseFields = tuple[bytes, int | None, bool]
ENCODED_FIELDS: AdaptiveMemo[tuple[tuple[bytes, bytes], ...], ResponseFields] = AdaptiveMemo()
# A longer encoded head is encoded every time, never remembered: an app that echoes a
# request's value into a header would otherwise let clients fill the memo with megabytes.
_MEMO_HEAD = 8192
# Response fields whose values decide the framing of the response.
_FRAMING_NAMES = frozenset((b"content-length", b"connection", b"transfer-encoding"))
# RFC 9110 section 6.4.1: 1xx, 204 and 304 responses never carry content.
NO_BODY_STATUSES = frozenset((*range(100, 200), 204, 304))
# Every 503 the server sends itself is overload (limit_concurrency, max_connections,
# shedding): RFC 9110 section 10.2.3 lets it say when to come back.
RETRY_AFTER_S = 1


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


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


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> ResponseFields:
    """encode_headers for a response the server frames: (block, content_length, close).

    The Content-Length (None if absent) and whether a Connection field asks to close come
    back for the framing decision; a Transfer-Encoding field is dropped, as the server
    frames the body itself and the app's field would frame it twice.
    """
    memo = ENCODED_FIELDS
    key = None
    if memo.paused:
        memo.paused -= 1
    elif type(headers) is list or type(headers) is tuple:
        try:
            key = tuple(headers)
            known = memo.get(key)
        except TypeError:  # pairs given as lists: unhashable, encoded every time
            key = None
        else:
            if known is not None:
                return known
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
    encoded = b"".join(parts), length, close
    if key is not None and len(encoded[0]) <= _MEMO_HEAD:
        memo.put(key, encoded)
    return encoded


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


# -- Content-Length: what a response declared, held against the body the app sends. -------
def first_part(declared: int, size: int) -> int:
    """Bytes still owed after the first body message; over the length, nothing is sent yet
    and the app's response is refused (the cycle answers 500)."""
    if size > declared:
        raise InvalidResponse("response body longer than its Content-Length")
    return declared - size


def next_part(remaining: int, size: int) -> int:
    """Bytes still owed after a later body message. Over the length, the head is out:
    the app hears RuntimeError and the connection (or stream) cannot end cleanly."""
    remaining -= size
    if remaining < 0:
        raise RuntimeError("response body longer than its Content-Length")
    return remaining


def ended_whole(remaining: int) -> bool:
    """The body ended; False (logged) when short of its length: the peer would wait for the
    rest, so the connection closes (HTTP/1.1) or the stream is reset (HTTP/2)."""
    if remaining > 0:
        logger.error("response ended %d bytes short of its Content-Length", remaining)
        return False
    return True
