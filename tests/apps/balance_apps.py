"""An app whose first worker boots at once and whose others wait for a file (BOOT_GATE).

The first worker to start its lifespan creates BOOT_GATE + ".first" and is ready; every
other one waits in lifespan startup until BOOT_GATE exists, so a test can connect while a
worker is still booting. HTTP answers carry the worker's pid in x-pid, as supervisor_apps.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from supervisor_apps import _respond

# How often a waiting worker looks for the gate: the app's own wait, not the test's.
_GATE_POLL_S = 0.02


async def _boot() -> None:
    gate = os.environ["BOOT_GATE"]
    try:
        os.close(os.open(gate + ".first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        while not os.path.exists(gate):
            await asyncio.sleep(_GATE_POLL_S)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _boot()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await _respond(send, str(os.getpid()).encode())
