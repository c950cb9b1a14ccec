"""The WebSocket handshake functions, fed parsed request heads and checked byte by byte."""

from __future__ import annotations

import pytest

from serve.server import ws_handshake as hs
from serve.server.errors import InvalidResponse
from serve.server.events import RequestHead
from serve.server.h1_parser import H1Parser
from serve.server.settings import Limits

# RFC 6455 §1.3's worked example.
SAMPLE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def head(fields: bytes, version: bytes = b"1.1") -> RequestHead:
    """A head parsed by the real parser, as the hand-over receives it."""
    raw = (
        b"GET /chat HTTP/%s\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        % version
        + fields
        + b"\r\n"
    )
    (parsed, *_) = H1Parser(Limits()).feed(raw)
    assert isinstance(parsed, RequestHead)
    return parsed


GOOD = b"sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n" % SAMPLE_KEY


def test_offer_lists_subprotocols_and_extensions_from_every_field() -> None:
    offer = hs.read_offer(
        head(
            GOOD + b"sec-websocket-protocol: chat, , superchat\r\n"
            b"sec-websocket-protocol: v2\r\n"
            b"sec-websocket-extensions: permessage-deflate; client_max_window_bits, x-other\r\n"
        )
    )
    assert offer.key == SAMPLE_KEY
    assert offer.subprotocols == ["chat", "superchat", "v2"]
    assert offer.extensions == ["permessage-deflate; client_max_window_bits", "x-other"]


@pytest.mark.parametrize(
    ("fields", "version", "status"),
    [
        (b"sec-websocket-key: %s\r\n" % SAMPLE_KEY, b"1.1", 426),
        (b"sec-websocket-key: %s\r\nsec-websocket-version: 8\r\n" % SAMPLE_KEY, b"1.1", 426),
        (b"sec-websocket-version: 13\r\n", b"1.1", 400),
        (b"sec-websocket-version: 13\r\nsec-websocket-key: bm90IDE2IGJ5dGVz\r\n", b"1.1", 400),
        (b"sec-websocket-version: 13\r\nsec-websocket-key: !!!!\r\n", b"1.1", 400),
        (GOOD + b"sec-websocket-key: %s\r\n" % SAMPLE_KEY, b"1.1", 400),
        (GOOD, b"1.0", 400),
    ],
    ids=["no-version", "old-version", "no-key", "short-key", "not-base64", "two-keys", "http10"],
)
def test_invalid_handshakes_are_rejected(fields: bytes, version: bytes, status: int) -> None:
    with pytest.raises(hs.HandshakeRejected) as info:
        hs.read_offer(head(fields, version))
    assert info.value.status == status
    response = hs.rejection(info.value, b"date: x\r\n")
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close\r\n" in response
    assert (b"sec-websocket-version: 13\r\n" in response) is (status == 426)


def test_accept_response_carries_the_rfc_accept_token() -> None:
    offer = hs.read_offer(head(GOOD))
    response = hs.accept_response(offer, None, None, [], b"date: x\r\n")
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + SAMPLE_ACCEPT + b"\r\ndate: x\r\n\r\n"
    )


def test_accept_response_with_subprotocol_extension_and_app_headers() -> None:
    offer = hs.read_offer(head(GOOD + b"sec-websocket-protocol: chat, superchat\r\n"))
    app_headers = [
        (b"X-Room", b"lobby"),
        (b"connection", b"close"),  # the server owns the handshake fields
        (b"sec-websocket-protocol", b"chat"),
    ]
    response = hs.accept_response(
        offer, "superchat", b"permessage-deflate", app_headers, b"date: x\r\n"
    )
    lines = response.split(b"\r\n")
    assert b"sec-websocket-protocol: superchat" in lines
    assert b"sec-websocket-extensions: permessage-deflate" in lines
    assert b"x-room: lobby" in lines
    assert b"connection: close" not in lines
    assert b"sec-websocket-protocol: chat" not in lines


def test_accept_refuses_a_subprotocol_the_client_did_not_offer() -> None:
    offer = hs.read_offer(head(GOOD + b"sec-websocket-protocol: chat\r\n"))
    with pytest.raises(InvalidResponse):
        hs.accept_response(offer, "other", None, [], b"")


def test_accept_refuses_header_injection() -> None:
    offer = hs.read_offer(head(GOOD))
    with pytest.raises(InvalidResponse):
        hs.accept_response(offer, None, None, [(b"x-a", b"1\r\nset-cookie: evil")], b"")


def test_deflate_takes_the_first_offer_it_can_honour() -> None:
    offers = [
        "x-unknown",
        "permessage-deflate; client_max_window_bits=8",  # below what zlib allows: skipped
        "permessage-deflate; server_no_context_takeover; client_max_window_bits",
        "permessage-deflate",
    ]
    negotiated = hs.negotiate_deflate(offers)
    assert negotiated is not None
    extension, header = negotiated
    assert header == b"permessage-deflate; server_no_context_takeover; client_max_window_bits=15"
    assert extension.enabled()
    assert extension.server_no_context_takeover


def test_deflate_not_offered_is_not_negotiated() -> None:
    assert hs.negotiate_deflate([]) is None
    assert hs.negotiate_deflate(["x-webkit-deflate-frame"]) is None


def test_denial_head_frames_a_complete_body_by_length() -> None:
    encoded = hs.denial_head(
        401, [(b"content-type", b"text/plain"), (b"Transfer-Encoding", b"chunked")], 9, b""
    )
    assert encoded == (
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\n"
        b"content-length: 9\r\nconnection: close\r\n\r\n"
    )


def test_denial_head_streams_by_close_or_keeps_the_app_length() -> None:
    streamed = hs.denial_head(403, [], None, b"date: x\r\n")
    assert streamed == b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\ndate: x\r\n\r\n"
    declared = hs.denial_head(403, [(b"content-length", b"20")], 5, b"")
    assert declared.count(b"content-length") == 1
    assert b"content-length: 20\r\n" in declared
