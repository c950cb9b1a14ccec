"""HTTP/2 header lists in and out: request pseudo-headers -> RequestHead (whose scope
server.scope builds, as for HTTP/1.1), and an app's response head -> the header list h2 sends.

Rules: no IO and no h2 import. h2 (validate_inbound_headers) has already refused what RFC 9113
section 8.2 makes a malformed message: uppercase names, connection-specific fields, pseudo-
headers after regular ones, repeated or missing pseudo-headers. What is left here is what the
request means to us, with the same target rules as HTTP/1.1 (server.http_target): a request we
will not serve raises RequestRejected(status), answered on its stream without the app.
Response fields are checked by server.http_fields, the same way as for HTTP/1.1, so that no
header an app sends can carry CR, LF or NUL to a proxy that turns it back into HTTP/1.1, and
come out lowercased, trimmed and without connection-specific fields: h2's own outbound
validation and normalisation, which would do it all again per response, are off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from serve.server import http_fields as hf
from serve.server.errors import InvalidResponse, RequestRejected
from serve.server.events import RequestHead
from serve.server.http_target import decode_path, split_target, valid_authority

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
TRAILERS_EXTENSION: dict[str, object] = {"http.response.trailers": {}}
_BLANKS = (b" ", b"\t")


def request_head(fields: Iterable[tuple[bytes, bytes]], has_body: bool) -> RequestHead:
    """The request of one HEADERS block; raises RequestRejected for one we do not serve."""
    method = path = authority = None
    headers: Fields = []
    for name, value in fields:
        if name[:1] != b":":
            headers.append((name, value))
        elif name == b":method":
            method = value
        elif name == b":path":
            path = value
        elif name == b":authority":
            authority = value
        elif name != b":scheme":
            # :protocol (RFC 8441 extended CONNECT) is never enabled in our SETTINGS.
            raise RequestRejected(400, f"unsupported pseudo-header {name!r}")
    if method is None or not _METHOD.fullmatch(method):
        raise RequestRejected(400, "missing or invalid :method")
    text_method = method.decode("ascii")
    if path is None or not _TARGET.fullmatch(path) or (path[0] != 0x2F and path != b"*"):
        # CONNECT has no :path (RFC 9113 section 8.5); split_target refuses it below anyway.
        if text_method != "CONNECT":
            raise RequestRejected(400, "missing or invalid :path")
        path = b"*"
    raw_path, query, _ = split_target(text_method, path)
    if authority is not None:
        if not valid_authority(authority) or authority[:1] in (b"", b":"):
            raise RequestRejected(400, "invalid :authority")
        # ASGI: the :authority value is the request's host header, in first place.
        headers = [(b"host", authority), *(f for f in headers if f[0] != b"host")]
    expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)
    return RequestHead(
        text_method, path, decode_path(raw_path), raw_path, query, "2", headers, True,
        expect and has_body, None, has_body,
    )  # fmt: skip


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
