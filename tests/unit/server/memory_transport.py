"""An in-memory transport for driving a real protocol (H1Connection, H2Session) without a
socket or a process (no tests here).

It behaves as asyncio's socket transports do where the protocols look: written bytes wait
in `buffer` until the test takes them (the peer reads), writes pause above `high_water`
and resume once the peer has read down to `low_water`, a close completes (connection_lost)
once the buffer is empty, an abort drops it at once, and reading can be paused. The test
plays the peer: `send()` delivers bytes as one read, `take()` reads what was written.
"""

from __future__ import annotations

import asyncio
from typing import Any

PEER = ("127.0.0.1", 50000)
SOCKNAME = ("127.0.0.1", 8000)


class MemoryTransport(asyncio.Transport):
    def __init__(
        self, protocol: asyncio.Protocol, *, high_water: int = 64 * 1024, low_water: int = 0
    ) -> None:
        super().__init__()
        self.protocol = protocol
        self.high_water = high_water
        self.low_water = low_water
        self.buffer = bytearray()
        self.reading = True
        self.closing = False
        self.aborted = False
        self.lost = False
        self.write_paused = False

    # -- the protocol's side ---------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": SOCKNAME}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        self.buffer += data
        if not self.write_paused and len(self.buffer) > self.high_water:
            self.write_paused = True
            self.protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        if not self.buffer:
            self._lose()

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.buffer.clear()
        self._lose()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    # -- the peer's side -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """The peer's bytes arrive as one read (a paused transport would not read them)."""
        assert self.reading, "the protocol paused reading"
        assert not self.lost
        self.protocol.data_received(data)

    def take(self) -> bytes:
        """The peer reads everything written so far."""
        data = bytes(self.buffer)
        self.buffer.clear()
        if self.write_paused and len(self.buffer) <= self.low_water:
            self.write_paused = False
            self.protocol.resume_writing()
        if self.closing:
            self._lose()
        return data

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


async def until(predicate: Any, turns: int = 100) -> None:
    """Let the loop run ready callbacks and tasks (no time passes) until `predicate()`."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")
