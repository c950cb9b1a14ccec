"""Apps whose workers get ready and then die, again and again: a crash loop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

# Seconds a worker serves after its lifespan startup before it exits with code 1.
LIFETIME_S = 0.3


async def crash_soon(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        asyncio.get_running_loop().call_later(LIFETIME_S, os._exit, 1)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"alive for now"})
