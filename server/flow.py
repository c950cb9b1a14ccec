"""Backpressure both ways for one connection.

Rules: this is the only code that calls transport.pause_reading/resume_reading. Reading is
paused while any reason holds (a body the app has not consumed, pipelined requests queued);
writers wait on `drain()` while the transport is above its write high-water mark.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    # Both flags are read on the hot path so that an unpaused connection costs no call.
    __slots__ = ("_drained", "_transport", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._drained: asyncio.Event | None = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None:
            self._drained.set()

    async def drain(self) -> None:
        """Wait until the transport accepts writes again (or the connection is lost)."""
        if self.write_paused and self._drained is not None:
            await self._drained.wait()
