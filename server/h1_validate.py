"""Pure checks on an HTTP/1.1 request head: request line, request target and the fields
that decide framing and connection handling.

Rules: no IO and no parser state; every function takes bytes and returns values or raises
RequestRejected(status, reason). The only module state is three bounded memo tables of
request lines and field values already checked: a result depends on nothing but the bytes,
so a hit is exactly what a fresh check would return. llhttp has already checked the syntax
of every field line (token names, no CTL in values, CRLF endings); what is here is the
semantics llhttp leaves to us (RFC 9110, RFC 9112) and the few syntax rules it is lenient
about. The request-target rules HTTP/2 shares are server.http_target's.
"""

from __future__ import annotations

import re

from serve.server.errors import RequestRejected
from serve.server.http_target import decode_path, split_target, valid_authority

# method SP request-target SP HTTP-version (RFC 9112 §3). One space each: llhttp tolerates
# runs of spaces, which lets a request line mean different things to different parsers.
# The target may hold any visible ASCII except "#": a fragment is never sent (RFC 9112 §3.2)
# and SP, CTL, DEL and bytes above 0x7f are invalid in a URI (RFC 3986 §2).
_REQUEST_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21\x22\x24-\x7e]+) HTTP/([0-9]\.[0-9])"
)
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
}
# Field names whose values decide framing or connection handling; the rest pass through.
_FRAMING_FIELDS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade")
)

# Memo tables for request lines and field values that repeat across requests.
_MEMO_SIZE = 256
_SEEN_HOSTS: set[bytes] = set()
_CONNECTION_OPTIONS: dict[bytes, frozenset[bytes]] = {}
# Request lines longer than this are checked every time rather than remembered.
_MEMO_LINE = 512

# (content_length, chunked, keep_alive, expect_continue, upgrade), see check_fields.
FieldSummary = tuple[int, bool, bool, bool, bytes | None]
# (method, target, http_version, path, raw_path, query_string, has_authority), see
# request_line.
RequestLine = tuple[str, bytes, str, str, bytes, bytes, bool]
# Request lines already checked. The parser looks here first (a dict lookup instead of a
# regex, a partition and a decode per request) and calls request_line() on a miss.
SEEN_REQUEST_LINES: dict[bytes, RequestLine] = {}


def request_line(line: bytes) -> RequestLine:
    """Check a request line (without its CRLF) and split it into what the scope needs."""
    method, target, version = parse_request_line(line, len(line))
    raw_path, query, has_authority = split_target(method, target)
    parsed = (method, target, version, decode_path(raw_path), raw_path, query, has_authority)
    if len(line) <= _MEMO_LINE:
        # Cleared when full rather than frozen: the table follows the routes in use, and a
        # client cannot fill it once with junk lines to make every later lookup miss.
        if len(SEEN_REQUEST_LINES) >= _MEMO_SIZE:
            SEEN_REQUEST_LINES.clear()
        SEEN_REQUEST_LINES[line] = parsed
    return parsed


def parse_request_line(head: bytes, end: int) -> tuple[str, bytes, str]:
    """Split head[:end] into (method, target, http_version)."""
    match = _REQUEST_LINE.fullmatch(head, 0, end)
    if match is None:
        raise RequestRejected(400, "malformed request line")
    method, target, version = match.groups()
    text_version = _VERSIONS.get(version)
    if text_version is None:
        # Well-formed but not a version we speak (HTTP/0.9, /1.2, /2.0 prior knowledge...).
        raise RequestRejected(505, f"HTTP/{version.decode()} is not supported")
    return _METHODS.get(method) or method.decode("ascii"), target, text_version


def check_fields(
    headers: list[tuple[bytes, bytes]], http11: bool, has_authority: bool
) -> FieldSummary:
    """Apply the RFC 9112 framing and connection rules to the request's field lines."""
    host_count = 0
    host = length = te = connection = expect = upgrade = None
    for name, value in headers:
        if name not in _FRAMING_FIELDS:
            continue
        if name == b"host":
            host_count += 1
            host = value
        elif name == b"content-length":
            # llhttp rejects duplicates and non-digits too; checked again because a wrong
            # body length is how requests get smuggled (RFC 9112 §6.3, §11.2).
            if length is not None or not value.isdigit():
                raise RequestRejected(400, "invalid Content-Length")
            length = value
        elif name == b"transfer-encoding":
            if te is not None:
                raise RequestRejected(400, "more than one Transfer-Encoding field")
            te = value
        elif name == b"connection":
            connection = value if connection is None else connection + b"," + value
        elif name == b"expect":
            expect = value
        else:
            upgrade = value if upgrade is None else upgrade + b", " + value
    # RFC 9112 §3.2: a 1.1 request needs exactly one Host, with a valid value; an empty one
    # is what a client sends when the target has no authority.
    if host_count > 1 or (host_count == 0 and http11):
        raise RequestRejected(400, "a request needs exactly one Host field")
    if host is not None and host not in _SEEN_HOSTS:
        _check_host(host, has_authority)
    chunked = te is not None
    if te is not None:
        _check_transfer_encoding(te, http11, length is not None)
    if connection is None:
        keep_alive, upgrade = http11, None
    else:
        options = _connection_options(connection)
        # RFC 9112 §9.3: 1.1 stays open unless "close"; 1.0 only with "keep-alive".
        keep_alive = b"close" not in options and (http11 or b"keep-alive" in options)
        if upgrade is not None:
            upgrade = upgrade.lower() if b"upgrade" in options else None
    # RFC 9110 §10.1.1: 100-continue is case-insensitive and ignored in an HTTP/1.0 request.
    expect_continue = http11 and expect is not None and expect.lower() == b"100-continue"
    return 0 if length is None else int(length), chunked, keep_alive, expect_continue, upgrade


def _check_host(host: bytes, has_authority: bool) -> None:
    if not valid_authority(host) or not (host or not has_authority):
        raise RequestRejected(400, "invalid Host field")
    # A keep-alive connection sends the same Host again and again; remembering a few
    # valid, short, non-empty values saves a regex per request. Bounded: never evicts.
    if host and len(host) <= 255 and len(_SEEN_HOSTS) < _MEMO_SIZE:
        _SEEN_HOSTS.add(host)


def _connection_options(value: bytes) -> frozenset[bytes]:
    """The lowercased options of the Connection field(s), memoized for common values."""
    options = _CONNECTION_OPTIONS.get(value)
    if options is None:
        options = frozenset(option.strip(b" \t") for option in value.lower().split(b","))
        if len(value) <= 64 and len(_CONNECTION_OPTIONS) < _MEMO_SIZE:
            _CONNECTION_OPTIONS[value] = options
    return options


def _check_transfer_encoding(value: bytes, http11: bool, has_length: bool) -> None:
    if not http11:
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        raise RequestRejected(400, "Transfer-Encoding in an HTTP/1.0 request")
    if has_length:
        # RFC 9112 §6.1: both present is the classic smuggling setup; never guess.
        raise RequestRejected(400, "both Content-Length and Transfer-Encoding")
    codings = [coding.strip(b" \t") for coding in value.lower().split(b",")]
    if codings[-1] != b"chunked":
        # RFC 9112 §6.3: without a final chunked the body length cannot be determined.
        raise RequestRejected(400, "chunked is not the final transfer coding")
    if len(codings) > 1:
        if b"chunked" in codings[:-1] or b"" in codings:
            # RFC 9112 §7: chunked must not be applied more than once.
            raise RequestRejected(400, "invalid Transfer-Encoding")
        # RFC 9112 §6.1: a transfer coding we do not implement is answered with 501.
        raise RequestRejected(501, "only the chunked transfer coding is supported")
