"""Messages a worker sends its master over their socketpair.

Rules: the channel is an AF_UNIX SOCK_DGRAM socketpair made by the master before fork, so
one send is one message and a dead peer never leaves half a frame. Messages are small JSON
objects; this module encodes (worker side) and decodes (master side) and does no IO.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """Lifespan startup finished and the worker accepts connections."""


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    requests: int
    connections: int


@dataclass(frozen=True, slots=True)
class WorkerBootFailed:
    """Sent just before exiting with exit code `code` (3 or 4); `message` is one line."""

    code: int
    message: str


WorkerMessage = WorkerReady | WorkerHeartbeat | WorkerBootFailed


def encode(message: WorkerMessage) -> bytes:
    if isinstance(message, WorkerReady):
        body: dict[str, object] = {"t": "ready"}
    elif isinstance(message, WorkerHeartbeat):
        body = {"t": "hb", "requests": message.requests, "connections": message.connections}
    else:
        body = {"t": "boot_failed", "code": message.code, "message": message.message}
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> WorkerMessage | None:
    """Decode one datagram; None for anything malformed (a worker must not crash the master)."""
    try:
        body = json.loads(data)
        kind = body["t"]
        if kind == "ready":
            return WorkerReady()
        if kind == "hb":
            return WorkerHeartbeat(int(body["requests"]), int(body["connections"]))
        if kind == "boot_failed":
            return WorkerBootFailed(int(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return None
    return None
