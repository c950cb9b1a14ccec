"""The request body between the connection (or stream) that reads it and the app's receive().

Rules: protocol-neutral, one per request, composed into its cycle (server.cycle). The
connection feeds it body bytes (`feed`) and the end of the body (`end`); the cycle's
receive() takes them as http.request messages (`take`) and waits (`wait`) while there is
nothing to take. Backpressure: `feed` reports when the unconsumed body is over
BODY_HIGH_WATER (the connection pauses reading) and every `take` tells the owner the body was
consumed (it resumes). The state moves RECEIVING -> COMPLETE -> DELIVERED. Once the client
left (`drop`), the unread body is garbage and a waiting receive() is woken to hear so.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Protocol

from serve.server.types import Message

# Unconsumed request body kept in memory before reading from the socket pauses.
BODY_HIGH_WATER = 256 * 1024


class BodyState(enum.Enum):
    RECEIVING = 1  # more body may arrive from the client
    COMPLETE = 2  # all of it arrived; some is not handed to the app yet
    DELIVERED = 3  # the app received the final http.request message


# Module-level aliases: reading a member off an Enum class costs a call on 3.11.
_RECEIVING, _COMPLETE, _DELIVERED = BodyState.RECEIVING, BodyState.COMPLETE, BodyState.DELIVERED


class BodyConsumer(Protocol):
    """Who reads from the socket: told when the app took what was waiting."""

    def body_consumed(self) -> None: ...


class RequestBody:
    __slots__ = ("_buffered", "_chunks", "_owner", "state", "waiter")

    def __init__(self, owner: BodyConsumer, has_body: bool) -> None:
        self._owner = owner
        self.state = _RECEIVING if has_body else _COMPLETE
        self._chunks: list[bytes] = []
        self._buffered = 0
        # The cycle's receive() while it waits; also woken when the response completes.
        self.waiter: asyncio.Future[None] | None = None

    # -- fed by the connection -------------------------------------------------------------
    def feed(self, data: bytes) -> bool:
        """Queue body bytes for the app; True when the unconsumed body is over its mark."""
        self._chunks.append(data)
        self._buffered += len(data)
        if self.waiter is not None:
            self.wake()
        return self._buffered > BODY_HIGH_WATER

    def end(self) -> None:
        self.state = _COMPLETE
        if self.waiter is not None:
            self.wake()

    def drop(self) -> None:
        """The client left: forget the unread body (the connection that holds the cycle may
        live on until the cyclic GC runs) and wake a waiting receive()."""
        self._chunks.clear()
        self._buffered = 0
        self.wake()

    # -- read by the cycle -----------------------------------------------------------------
    def take(self) -> Message | None:
        """The next http.request message; None while there is nothing to hand over."""
        chunks = self._chunks
        if chunks:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._buffered = 0
            more = self.state is _RECEIVING
            if not more:
                self.state = _DELIVERED
            self._owner.body_consumed()
            return {"type": "http.request", "body": body, "more_body": more}
        if self.state is _COMPLETE:
            self.state = _DELIVERED
            return {"type": "http.request", "body": b"", "more_body": False}
        return None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter
