"""The request target, for HTTP/1.1 and HTTP/2 alike: its forms, its authority, its path.

Rules: pure functions of bytes (RFC 9110, RFC 9112 section 3.2, RFC 3986); a target we will
not serve raises RequestRejected(status, reason). HTTP/1.1 reads the target from the
request line (server.h1_validate), HTTP/2 from :path and :authority (server.h2_scope).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote_to_bytes

from serve.server.errors import RequestRejected

_ABSOLUTE_FORM = re.compile(rb"(?i:https?)://([^/?]*)(.*)")
# host [ ":" port ] after RFC 3986 §3.2.2: an IP-literal, or a reg-name (which covers IPv4).
_AUTHORITY = re.compile(
    rb"(?:\[([0-9A-Fa-f:.]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)


def split_target(method: str, target: bytes) -> tuple[bytes, bytes, bool]:
    """Return (raw_path, query_string, has_authority) for the request target."""
    if method == "CONNECT":
        # CONNECT asks us to open a tunnel to the authority-form target (RFC 9110 §9.3.6):
        # that is a proxy's job, and an origin server must not become an open relay.
        raise RequestRejected(400, "CONNECT is not supported: this is not a proxy")
    if target[0] == 0x2F:  # "/": origin-form, RFC 9112 §3.2.1
        raw_path, _, query = target.partition(b"?")
        return raw_path, query, False
    if target == b"*":
        # asterisk-form exists only for a server-wide OPTIONS (RFC 9112 §3.2.4).
        if method != "OPTIONS":
            raise RequestRejected(400, "asterisk-form target is only valid for OPTIONS")
        return target, b"", False
    # absolute-form (RFC 9112 §3.2.2): the server must accept it and take the path from it.
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise RequestRejected(400, "unsupported request-target form")
    authority, rest = match.groups()
    # An http(s) URI with an empty host is invalid (RFC 9110 §4.2.1); userinfo ("@") fails
    # the authority grammar, as RFC 9110 §4.2.4 asks.
    if not valid_authority(authority) or authority[:1] in (b"", b":"):
        raise RequestRejected(400, "invalid authority in absolute-form target")
    raw_path, _, query = rest.partition(b"?")
    return raw_path or b"/", query, True


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a path and read it as UTF-8, as the ASGI `path` key is defined."""
    if raw_path.find(b"%") < 0:
        # The target grammar admits ASCII only, and UTF-8 is the codec without a name lookup.
        return raw_path.decode()
    # Undecodable bytes become U+FFFD (as uvicorn does); raw_path keeps the exact bytes.
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def valid_authority(value: bytes) -> bool:
    """host [":" port] per RFC 3986 §3.2.2-3.2.3 (an empty reg-name is allowed here)."""
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        return False
    literal = match.group(1)
    if literal is None:
        return True
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except ValueError:
        return False
    return True
