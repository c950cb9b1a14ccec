"""ASGI apps for the master's system tests: who served me, slow requests, failing boots.

`app` answers "/" with the worker's pid and "/slow" by holding the request open for a
minute (it prints "slow request started" first, so a test knows it is in flight).
`failing_startup` reports lifespan.startup.failed; `slow_startup` never finishes booting.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

Scope = dict[str, Any]
STARTUP_FAILURE = "database unreachable at db.invalid:5432"


async def _respond(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["path"] == "/slow":
        print("app: slow request started", file=sys.stderr, flush=True)
        await asyncio.sleep(60)
    await _respond(send, str(os.getpid()).encode())


async def failing_startup(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILURE})
        return
    await _respond(send, b"never served")


async def slow_startup(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        print("app: startup is waiting", file=sys.stderr, flush=True)
        await asyncio.sleep(120)
        await send({"type": "lifespan.startup.complete"})
        return
    await _respond(send, b"too late")
