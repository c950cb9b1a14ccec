"""HTTP/2 header lists in and out: request pseudo-headers -> RequestHead (whose scope
server.scope builds, as for HTTP/1.1), and an app's response head -> the header list h2 sends.

Rules: no IO and no h2 import. h2's own inbound validation is off (server.h2_connection):
it ran seven generators over every field of every request, some 7% of a small request's
cost, and this module makes the same checks in the one pass that reads the fields. What RFC
9113 sections 8.2 and 8.3 make a malformed message (uppercase or illegal characters in a
name, NUL, CR, LF or surrounding whitespace in a value, connection-specific fields, TE other
than "trailers", pseudo-headers repeated, unknown, misplaced or missing, :authority unlike
Host) raises Malformed, which ends the connection with PROTOCOL_ERROR as h2 ended it (a
connection error is allowed for a stream error, section 5.4.1); split cookie fields are
joined for the app (section 8.2.3), as h2's inbound normalisation joined them. What is left
is what the request means to us, with the same target rules as HTTP/1.1
(server.http_target): a request we will not serve raises RequestRejected(status), answered
on its stream without the app. A header list of at most 1 KiB that made a RequestHead is
remembered by its fields (KNOWN_REQUESTS, worker-wide, server.memo): a client that sends the
same block again (server.h2_hpack hands back the same fields for it) skips the checks, and
each request still gets a header list of its own.
Response fields are checked by server.http_fields, the same way as for HTTP/1.1, so that no
header an app sends can carry CR, LF or NUL to a proxy that turns it back into HTTP/1.1, and
come out lowercased, trimmed and without connection-specific fields: h2's own outbound
validation and normalisation, which would do it all again per response, are off.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from serve.server import http_fields as hf
from serve.server.errors import InvalidResponse, RequestRejected
from serve.server.events import RequestHead
from serve.server.http_target import decode_path, split_target, valid_authority
from serve.server.memo import AdaptiveMemo

Fields = list[tuple[bytes, bytes]]

# RFC 9110 token: a method; the request target: visible ASCII except "#" (as for HTTP/1.1).
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21\x22\x24-\x7e]+")
# Fields that mean something only to one HTTP/1.1 hop (RFC 9113 section 8.2.2): h2 refuses
# them in a response (`te` unless it says "trailers", which means nothing in a response
# either), and an app written for HTTP/1.1 may well send them.
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade")
)
# RFC 9113 section 8.2.1: a name has no uppercase letter, no character at or below SP or
# above "~", and no colon (a pseudo-header's leading one aside); a value no NUL, CR or LF,
# and no whitespace at either end.
_NAME = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+")
_BAD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z")
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":status", b":protocol"))
# Regular fields with a rule of their own: cookie, te, host, expect, the connection-specific.
_SPECIAL = frozenset(
    (
        b"cookie",
        b"te",
        b"host",
        b"expect",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    )
)
# What a header list made, but for the body: (method, :path, decoded path, raw path, query,
# the fields the app gets, whether it asked for 100-continue).
_Known = tuple[str, bytes, str, bytes, bytes, tuple[tuple[bytes, bytes], ...], bool]
KNOWN_REQUESTS: AdaptiveMemo[tuple[tuple[bytes, bytes], ...], _Known] = AdaptiveMemo()
# Larger lists carry cookies or tokens that rarely repeat; names and values, in bytes.
_MEMO_FIELDS = 1024
_FREE_IN_TRAILERS = frozenset((b"cookie", b"host", b"expect"))
TRAILERS_EXTENSION: dict[str, object] = {"http.response.trailers": {}}
_BLANKS = (b" ", b"\t")


class Malformed(Exception):
    """A header list RFC 9113 section 8.2 or 8.3 makes malformed: a connection error."""


def request_head(fields: Iterable[tuple[bytes, bytes]], has_body: bool) -> RequestHead:
    """The request of one HEADERS block; raises Malformed for a malformed one (before any
    other check, as h2 did) and RequestRejected for one we do not serve."""
    if KNOWN_REQUESTS.paused:
        KNOWN_REQUESTS.paused -= 1
        known = _parsed(fields)
    else:
        key = tuple(fields)
        cached = KNOWN_REQUESTS.get(key)
        if cached is None:
            cached = _parsed(key)
            if sum(len(name) + len(value) for name, value in key) <= _MEMO_FIELDS:
                KNOWN_REQUESTS.put(key, cached)
        known = cached
    method, path, decoded, raw_path, query, headers, expect = known
    return RequestHead(
        method, path, decoded, raw_path, query, "2", list(headers), True, expect and has_body,
        None, has_body,
    )  # fmt: skip


def _parsed(fields: Iterable[tuple[bytes, bytes]]) -> _Known:
    pseudo, headers, host, expect = _split(fields)
    method = pseudo.get(b":method")
    if method is None:
        raise Malformed("no :method")
    authority = _check_pseudo(pseudo, method == b"CONNECT", host)
    if b":protocol" in pseudo:
        # RFC 8441 extended CONNECT: never enabled in our SETTINGS.
        raise RequestRejected(400, "unsupported pseudo-header b':protocol'")
    if not _METHOD.fullmatch(method):
        raise RequestRejected(400, "invalid :method")
    text_method = method.decode("ascii")
    path = pseudo.get(b":path")
    if path is None or not _TARGET.fullmatch(path) or (path[0] != 0x2F and path != b"*"):
        # CONNECT has no :path (RFC 9113 section 8.5); split_target refuses it below anyway.
        if text_method != "CONNECT":
            raise RequestRejected(400, "missing or invalid :path")
        path = b"*"
    raw_path, query, _ = split_target(text_method, path)
    if b":authority" in pseudo and not _usable_authority(authority):
        raise RequestRejected(400, "invalid :authority")
    # ASGI: the :authority value (or the host field) is the request's host, in first place.
    headers[0] = (b"host", authority)
    return text_method, path, decode_path(raw_path), raw_path, query, tuple(headers), expect


def _split(
    fields: Iterable[tuple[bytes, bytes]],
) -> tuple[dict[bytes, bytes], Fields, bytes | None, bool]:
    """(the pseudo-headers, the regular fields after a place kept for the host, with the
    cookies joined last, the host field, whether 100-continue is expected), each checked."""
    pseudo: dict[bytes, bytes] = {}
    headers: Fields = [(b"host", b"")]
    cookies: list[bytes] = []
    host = None
    expect = regular = False
    for name, value in fields:
        if _BAD_VALUE.search(value) is not None:
            raise Malformed(f"invalid value of {name!r}")
        if name[:1] == b":":
            if regular or name in pseudo or name not in _PSEUDO:
                raise Malformed(f"pseudo-header {name!r} repeated, unknown or out of place")
            pseudo[name] = value
            continue
        regular = True
        if _NAME.fullmatch(name) is None:
            raise Malformed(f"invalid field name {name!r}")
        if name in _SPECIAL:
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"host":
                if host is not None:
                    raise Malformed("more than one host")
                host = value
                continue
            if name == b"expect":
                expect = expect or value.lower() == b"100-continue"
            else:
                _check_special(name, value)
        headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    return pseudo, headers, host, expect


def _check_special(name: bytes, value: bytes) -> None:
    if name != b"te":
        raise Malformed(f"connection-specific field {name!r}")
    if value.lower() != b"trailers":
        raise Malformed("TE other than trailers")


def _check_pseudo(pseudo: dict[bytes, bytes], connect: bool, host: bytes | None) -> bytes:
    """RFC 9113 section 8.3.1 and RFC 8441 section 4: which pseudo-headers a request has;
    returns the request's authority (:authority, or else the host field)."""
    if b":status" in pseudo or (b":protocol" in pseudo and not connect):
        raise Malformed("a response or extended CONNECT pseudo-header")
    if connect and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise Malformed("CONNECT with :scheme or :path")
    elif b":scheme" not in pseudo or not pseudo.get(b":path"):
        raise Malformed("no :scheme, or no or an empty :path")
    authority = pseudo.get(b":authority")
    if authority is None:
        if host is None:
            raise Malformed("neither :authority nor host")
        return host
    if host is not None and host != authority:
        raise Malformed(":authority unlike host")
    return authority


@functools.lru_cache(maxsize=64)
def _usable_authority(authority: bytes) -> bool:
    # Clients name the same authority on every request: checked once (the cache is bounded).
    return valid_authority(authority) and authority[:1] not in (b"", b":")


def check_trailers(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """A request's trailers (which no app reads): checked as fields, with no pseudo-header."""
    for name, value in fields:
        if _BAD_VALUE.search(value) is not None or _NAME.fullmatch(name) is None:
            raise Malformed(f"invalid trailer field {name!r}")
        if name in _SPECIAL and name not in _FREE_IN_TRAILERS:
            _check_special(name, value)


def declared_length(headers: Fields) -> int | None:
    """The request's Content-Length (h2 has checked that it is a number, and the body)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def response_fields(
    status: int, headers: Iterable[tuple[bytes, bytes]], date_fields: Fields
) -> tuple[Fields, int | None]:
    """(the HEADERS list of a response, its declared Content-Length or None).

    Raises InvalidResponse (as for HTTP/1.1) for a bad status, name or value.
    """
    if status < 200 or status > 599:
        # 1xx heads are the server's (100-continue); 101 does not exist in HTTP/2.
        raise InvalidResponse(f"invalid status code {status!r} for HTTP/2")
    headers = list(headers)
    _, declared, _ = hf.response_headers(headers)
    fields: Fields = [(b":status", b"%d" % status)]
    for name, value in headers:
        lname = name.lower()
        if lname not in _HOP_BY_HOP:
            fields.append((lname, _trimmed(value)))
    fields += date_fields
    return fields, declared


def _trimmed(value: bytes) -> bytes:
    # RFC 9113 section 8.2.1: no leading or trailing whitespace in a field value.
    if value[:1] in _BLANKS or value[-1:] in _BLANKS:
        return value.strip(b" \t")
    return value


def trailer_fields(headers: Iterable[tuple[bytes, bytes]]) -> Fields:
    """The fields of http.response.trailers, checked like response headers."""
    headers = list(headers)
    hf.encode_headers(headers)
    fields = [(name.lower(), _trimmed(value)) for name, value in headers]
    if any(name in _HOP_BY_HOP or name[:1] == b":" for name, _ in fields):
        raise InvalidResponse("trailers may not hold connection or pseudo-header fields")
    return fields


def date_fields(date_block: bytes) -> Fields:
    """The worker's pre-encoded `date:` (and `server:`) lines as header fields."""
    fields: Fields = []
    for line in date_block.split(b"\r\n"):
        name, sep, value = line.partition(b": ")
        if sep:
            fields.append((name, value))
    return fields
