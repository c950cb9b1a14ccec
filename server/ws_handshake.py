"""The WebSocket opening handshake (RFC 6455 §4.2) on top of an already parsed request head.

Rules: pure functions, no IO and no state. The HTTP/1.1 parser has framed and validated the
upgrade request; this module checks the few fields only a WebSocket server cares about and
encodes the server's answers (101, 403, 400/426 and the app's own denial response) with the
same header validation as every HTTP/1.1 response (server.http_fields). Extension negotiation
is wsproto's: this module only picks which offer to hand it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from serve.server import h1_writer as w
from serve.server import http_fields as hf
from serve.server.errors import InvalidResponse
from serve.server.events import RequestHead

WS_VERSION = b"13"
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
# Headers the server owns in a 101: an app's copy would contradict or duplicate ours.
_OWN_101_HEADERS = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions")
)
# Headers that would frame a denial response differently from how it is written here.
_FRAMING_HEADERS = frozenset((b"connection", b"transfer-encoding"))


class HandshakeRejected(Exception):
    """The upgrade request is not a valid WebSocket handshake; answer it as plain HTTP."""

    def __init__(self, status: int, reason: str, headers: bytes = b"") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class ClientOffer:
    """What the client's handshake asks for."""

    key: bytes
    subprotocols: list[str]
    extensions: list[str]


def read_offer(head: RequestHead) -> ClientOffer:
    """Check the handshake fields of a GET with `Upgrade: websocket` (RFC 6455 §4.2.1)."""
    if head.http_version != "1.1":
        raise HandshakeRejected(400, "a WebSocket handshake needs HTTP/1.1")
    key: bytes | None = None
    version: bytes | None = None
    subprotocols: list[str] = []
    extensions: list[str] = []
    for name, value in head.headers:
        if name == b"sec-websocket-key":
            key = value if key is None else b""  # two keys: invalid, like a malformed one
        elif name == b"sec-websocket-version":
            version = value
        elif name == b"sec-websocket-protocol":
            subprotocols += _split_list(value)
        elif name == b"sec-websocket-extensions":
            extensions += _split_list(value)
    if version != WS_VERSION:
        # §4.4: name the version we speak so that the client can retry with it.
        raise HandshakeRejected(
            426, "unsupported Sec-WebSocket-Version", b"sec-websocket-version: 13\r\n"
        )
    if key is None or not _valid_key(key):
        raise HandshakeRejected(400, "missing or invalid Sec-WebSocket-Key")
    return ClientOffer(key, subprotocols, extensions)


def _split_list(value: bytes) -> list[str]:
    items = (item.strip() for item in value.decode("latin-1").split(","))
    return [item for item in items if item]


def _valid_key(key: bytes) -> bool:
    """§4.2.1 item 5: the key is the base64 encoding of 16 bytes."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def negotiate_deflate(offers: Iterable[str]) -> tuple[PerMessageDeflate, bytes] | None:
    """Accept the first permessage-deflate offer wsproto can honour (RFC 7692 §5).

    Each offer is tried on a fresh extension: wsproto's accept() records the parameters of
    the offer it sees, so handing it every offer at once would mix their settings.
    """
    for offer in offers:
        if offer.split(";", 1)[0].strip() != PerMessageDeflate.name:
            continue
        extension = PerMessageDeflate()
        header = server_extensions_handshake([offer], [extension])
        if header is not None:
            return extension, header
    return None


def accept_response(
    offer: ClientOffer,
    subprotocol: str | None,
    extensions: bytes | None,
    app_headers: Iterable[tuple[bytes, bytes]],
    date_block: bytes,
) -> bytes:
    """The 101 response completing the handshake; app headers are validated like any other."""
    headers = [(name.lower(), value) for name, value in app_headers]
    parts = [_SWITCHING, b"sec-websocket-accept: %s\r\n" % generate_accept_token(offer.key)]
    if subprotocol is not None:
        if subprotocol not in offer.subprotocols:
            raise InvalidResponse(f"subprotocol {subprotocol!r} was not offered by the client")
        parts.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode("ascii"))
        headers = [h for h in headers if h[0] != b"sec-websocket-protocol"]
    if extensions is not None:
        parts.append(b"sec-websocket-extensions: %s\r\n" % extensions)
    parts += (hf.encode_headers(h for h in headers if h[0] not in _OWN_101_HEADERS), date_block)
    parts.append(b"\r\n")
    return b"".join(parts)


def rejection(exc: HandshakeRejected, date_block: bytes) -> bytes:
    return w.error_response(exc.status, date_block + exc.headers)


def denial_head(
    status: int, app_headers: Iterable[tuple[bytes, bytes]], length: int | None, date_block: bytes
) -> bytes:
    """The head of the app's own denial response (the websocket.http.response extension).

    The connection always closes after it, so a body of unknown length is simply delimited by
    the close (RFC 9112 §6.3 item 8); a complete body gets its Content-Length.
    """
    headers = [(name.lower(), value) for name, value in app_headers]
    if any(name == b"content-length" for name, _ in headers):
        length = None
    extra = w.content_length(length) if length is not None else b""
    return b"".join(
        (
            w.status_line(status),
            hf.encode_headers(h for h in headers if h[0] not in _FRAMING_HEADERS),
            extra,
            w.CONNECTION_CLOSE,
            date_block,
            b"\r\n",
        )
    )
