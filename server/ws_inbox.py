"""What a WebSocket client sent that its app has not received yet: the app's `receive`.

Rules: one Inbox per WebSocket connection, fed by the connection with wsproto's message
parts and read by the app. It starts with websocket.connect; once the connection ends
(`end`), what is queued is still delivered, then websocket.disconnect with the close code,
for ever after. Backpressure: reading from the socket pauses while the app is behind
(QUEUE_MAX_MESSAGES messages or QUEUE_MAX_BYTES bytes not taken) and resumes as it catches
up; a message over max_size is refused before it is queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from serve.server.flow import FlowControl
from serve.server.types import Message

QUEUE_MAX_MESSAGES = 32
QUEUE_MAX_BYTES = 1024 * 1024

_Texts = list[str]
_Blobs = list[bytes]


class Inbox:
    __slots__ = (
        "_flow",
        "_parts",
        "_parts_size",
        "_waiter",
        "ended",
        "max_size",
        "messages",
        "size",
    )

    def __init__(self, flow: FlowControl, max_size: int) -> None:
        self._flow = flow
        self.max_size = max_size
        self.messages: deque[Message] = deque([{"type": "websocket.connect"}])
        self.size = 0
        # The parts of a fragmented message so far.
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._waiter: asyncio.Future[None] | None = None
        # websocket.disconnect, once the connection is over.
        self.ended: Message | None = None

    def add_part(self, data: str | bytes | bytearray, finished: bool) -> bool:
        """One part of a message from the client; False (nothing kept) over max_size."""
        self._parts.append(data if isinstance(data, str) else bytes(data))
        self._parts_size += len(data)
        if self._parts_size > self.max_size:
            return False
        if not finished:
            return True
        parts, size = self._parts, self._parts_size
        self._parts, self._parts_size = [], 0
        if isinstance(data, str):
            message: Message = {"type": "websocket.receive", "text": "".join(cast(_Texts, parts))}
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(cast(_Blobs, parts))}
        self.messages.append(message)
        self.size += size
        if self.full():
            # The app is behind: stop reading until it catches up (see receive()).
            self._flow.pause_reading()
        self._wake()
        return True

    def end(self, code: int, reason: str) -> None:
        """The connection is over: after what is queued, the app hears websocket.disconnect."""
        if self.ended is None:
            self.ended = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._wake()

    def full(self) -> bool:
        return len(self.messages) >= QUEUE_MAX_MESSAGES or self.size >= QUEUE_MAX_BYTES

    async def receive(self) -> Message:
        while True:
            if self.messages:
                return self._take()
            if self.ended is not None:
                return self.ended
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def _take(self) -> Message:
        message = self.messages.popleft()
        if message["type"] == "websocket.receive":
            payload = message.get("text") or message.get("bytes") or b""
            self.size -= len(payload)
            if self.ended is None and not self.full():
                self._flow.resume_reading()
        return message

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
