"""Messages a worker sends its master.

Rules: the channel is an AF_UNIX SOCK_DGRAM socketpair made by the master before fork, so
one send is one message and a dead peer never leaves half a frame. Messages are small JSON
objects; this module encodes (worker side) and decodes (master side) and does no IO. A
heartbeat's counters are cumulative for the worker's life (server.stats); a heartbeat
without them (an older encoder) decodes with zeros, one with counters of the wrong shape
not at all. This module is part of the master-worker contract: the master learns the
heartbeat's shape (its buckets and overload events) from here, not from server.stats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from serve.server.stats import (
    DURATION_BUCKETS_S,
    OVERLOAD_EVENTS,
    ZERO_DURATIONS,
    ZERO_OVERLOAD,
    ZERO_RESPONSES,
)

__all__ = [
    "DURATION_BUCKETS_S",
    "OVERLOAD_EVENTS",
    "ZERO_DURATIONS",
    "ZERO_OVERLOAD",
    "ZERO_RESPONSES",
    "WorkerBootFailed",
    "WorkerHeartbeat",
    "WorkerMessage",
    "WorkerReady",
    "decode",
    "encode",
]


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """Lifespan startup finished and the worker accepts connections."""


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    requests: int
    connections: int
    # Responses by status class, 1xx to 5xx.
    responses: tuple[int, ...] = ZERO_RESPONSES
    # Requests per duration bucket (server.stats.DURATION_BUCKETS_S, then +Inf), and the
    # sum of their durations in seconds.
    durations: tuple[int, ...] = ZERO_DURATIONS
    duration_sum: float = 0.0
    # server.stats.OVERLOAD_EVENTS counts, and whether the worker is shedding load now.
    overload: tuple[int, ...] = ZERO_OVERLOAD
    shedding: bool = False


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
        body = {
            "t": "hb",
            "requests": message.requests,
            "connections": message.connections,
            "responses": message.responses,
            "durations": message.durations,
            "duration_sum": message.duration_sum,
            "overload": message.overload,
            "shedding": message.shedding,
        }
    else:
        body = {"t": "boot_failed", "code": message.code, "message": message.message}
    return json.dumps(body, separators=(",", ":")).encode()


def _counts(value: object, shape: tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != len(shape):
        raise ValueError("counters of the wrong shape")
    if not all(type(item) is int and item >= 0 for item in value):
        raise ValueError("counters must be integers >= 0")
    return tuple(value)


def _heartbeat(body: Any) -> WorkerHeartbeat:
    duration_sum = body.get("duration_sum", 0.0)
    if isinstance(duration_sum, bool) or not isinstance(duration_sum, (int, float)):
        raise TypeError("duration_sum must be a number")
    return WorkerHeartbeat(
        int(body["requests"]),
        int(body["connections"]),
        _counts(body.get("responses", list(ZERO_RESPONSES)), ZERO_RESPONSES),
        _counts(body.get("durations", list(ZERO_DURATIONS)), ZERO_DURATIONS),
        float(duration_sum),
        _counts(body.get("overload", list(ZERO_OVERLOAD)), ZERO_OVERLOAD),
        body.get("shedding") is True,
    )


def decode(data: bytes) -> WorkerMessage | None:
    """Decode one datagram; None for anything malformed (a worker must not crash the master)."""
    try:
        body = json.loads(data)
        kind = body["t"]
        if kind == "ready":
            return WorkerReady()
        if kind == "hb":
            return _heartbeat(body)
        if kind == "boot_failed":
            return WorkerBootFailed(int(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return None
    return None
