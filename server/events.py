"""Protocol-neutral request events produced by the framing layer.

Rules: slotted dataclasses, no behaviour, never mutated after creation (not declared
frozen because a frozen RequestHead costs five times as much to build, once per request).
The HTTP/1.1 parser emits them; later protocols (h2, WebSocket upgrade) emit the same ones,
so the ASGI cycle exists once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RequestHead:
    method: str
    # The request target exactly as sent (origin-form path+query, or absolute-form URI).
    target: bytes
    # Percent-decoded path and the raw (still encoded) path, without the query.
    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str  # "1.0" or "1.1"
    # Names lowercased, values with surrounding whitespace trimmed, order kept.
    headers: list[tuple[bytes, bytes]]
    # What the client asked for; the protocol may still close (drain, errors).
    keep_alive: bool
    expect_continue: bool
    # The value of an Upgrade header the client sent with Connection: upgrade, lowercased.
    upgrade: bytes | None
    # True when a body follows (Content-Length > 0 or chunked).
    has_body: bool


@dataclass(slots=True)
class BodyChunk:
    data: bytes


@dataclass(slots=True)
class MessageEnd:
    """The current request's body is complete (trailers, if any, were discarded)."""


@dataclass(slots=True)
class ParseFailed:
    """The input cannot be framed; the connection must answer `status` and close."""

    status: int
    reason: str


Event = RequestHead | BodyChunk | MessageEnd | ParseFailed
