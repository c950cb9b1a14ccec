"""LoadShedder on a real uvloop loop: a loop held by blocking work starts shedding after the
interval, and a punctual loop ends it; the accept-queue wait counts like the lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import uvloop

from server.settings import SheddingSettings
from server.shedding import LoadShedder

SETTINGS = SheddingSettings(target_s=0.02, interval_s=0.1)


@dataclass
class Ctx:
    shedding: bool = False


class FakeSocket:
    """Only what accepted() reads: a TCP socket whose data waited `waited_ms` in the kernel."""

    family = 2  # AF_INET

    def __init__(self, waited_ms: int) -> None:
        self.info = bytes(52) + waited_ms.to_bytes(4, "little") + bytes(48)

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        return self.info


class FakeTransport:
    def __init__(self, waited_ms: int) -> None:
        self.sock = FakeSocket(waited_ms)

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def accepted(waited_ms: int) -> asyncio.BaseTransport:
    return cast(asyncio.BaseTransport, FakeTransport(waited_ms))


async def until(condition: Callable[[], bool], block_s: float = 0.0, limit: int = 200) -> int:
    """Turns of the loop (each holding it `block_s`) until `condition()` holds."""
    for turn in range(limit):
        if condition():
            return turn
        time.sleep(block_s)
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def test_a_lagging_loop_sheds_after_the_interval_and_recovers() -> None:
    async def main() -> None:
        ctx = Ctx()
        shedder = LoadShedder(ctx, SETTINGS, asyncio.get_running_loop())
        began = time.monotonic()
        await until(lambda: ctx.shedding, block_s=0.05)
        assert time.monotonic() - began >= SETTINGS.interval_s
        assert shedder.in_episode
        # The loop runs freely again: shedding stops, then the episode ends.
        await until(lambda: not ctx.shedding)
        await until(lambda: not shedder.in_episode)
        shedder.stop()

    uvloop.run(main())


def test_a_long_accept_queue_sheds_while_the_loop_is_punctual() -> None:
    async def main() -> None:
        ctx = Ctx()
        shedder = LoadShedder(ctx, SETTINGS, asyncio.get_running_loop())

        def after_accept(waited_ms: int) -> Callable[[], bool]:
            def check() -> bool:
                shedder.accepted(accepted(waited_ms))
                return ctx.shedding is (waited_ms > 0)

            return check

        await until(after_accept(500))
        # One connection taken at once in a probe's window: the queue is short again.
        await until(after_accept(0))
        shedder.stop()
        assert not ctx.shedding

    uvloop.run(main())
