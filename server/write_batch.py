"""Small response writes held until the app's current step ends, then sent as one.

An app that streams often sends several body messages without suspending in between (a
template rendered in parts, rows from a generator, ten chunks at once); written one by one,
each would be its own send() syscall and, on loopback, its own wake-up of the reader. Held
here, they leave together when the event loop next runs its callbacks: as soon as the app
awaits something or returns. A response that ends, or held bytes past `limit`, flush at
once, so a finished response never waits and flow control sees the bytes in the transport
soon enough to pause a fast producer.
"""

from __future__ import annotations

import asyncio


class WriteBatch:
    __slots__ = ("_loop", "_parts", "_size", "_transport", "limit")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, limit: int
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._parts: list[bytes] = []
        self._size = 0
        self.limit = limit

    def add(self, data: bytes) -> None:
        """More of the response: held when small, else out now after what is held."""
        if len(data) > self.limit:
            self.flush()
            self._transport.write(data)
            return
        parts = self._parts
        if not parts:
            self._loop.call_soon(self.flush)
        parts.append(data)
        self._size += len(data)
        if self._size > self.limit:
            self.flush()

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._size = 0
        # A connection lost or aborted meanwhile has no use for the bytes.
        if not self._transport.is_closing():
            self._transport.write(data)

    def finish(self, data: bytes, end: bytes = b"") -> None:
        """The last bytes of the response (`end`: its framing trailer): out now, with
        whatever is held, in one write unless `data` is too large to be worth a copy."""
        parts = self._parts
        if len(data) > self.limit:
            self.flush()
            self._transport.writelines((data, end))
        elif parts:
            parts.append(data)
            parts.append(end)
            self.flush()
        elif end:
            self._transport.write(data + end)
        elif data:
            self._transport.write(data)
