"""ASGI apps for the supervisor's system tests: who served me, and workers that go wrong.

`app` answers every path with the worker's pid (in the body and the x-pid header), except:
- /slow holds the request for a second (the app's behaviour, so a test can send a signal
  while a request is in flight; it prints "slow request started" first);
- /hang blocks the whole event loop in time.sleep (a stuck worker: no more heartbeats);
- /leak keeps LEAK_BYTES more memory per request, touched so it counts in RSS;
- /orphan forks a child that forks a grandchild and exits at once: the grandchild is
  re-parented to the nearest subreaper or PID 1 and exits, and must be reaped there. The
  answer is the grandchild's pid.
`dying_factory` (with --factory) kills its worker before it is ready, every time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

Scope = dict[str, Any]
LEAK_BYTES = 8 * 1024 * 1024
# The line of the time.sleep call in hang(): the stack dump must point at it.
HANG_MARKER = "time.sleep(120)  # the blocked line"

_leaked: list[bytes] = []


async def _respond(send: Any, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
        (b"x-pid", str(os.getpid()).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print(f"app: lifespan shutdown in {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


def hang() -> None:
    print(f"app: worker {os.getpid()} blocks its loop", file=sys.stderr, flush=True)
    time.sleep(120)  # the blocked line


def orphan() -> int:
    """Leave a grandchild behind whose parent exits first; return the grandchild's pid."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os._exit(0)
        os.write(write_end, str(grandchild).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return int(pipe.read())


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/slow":
        print("app: slow request started", file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)
    elif path == "/hang":
        hang()
    elif path == "/leak":
        _leaked.append(os.urandom(16) * (LEAK_BYTES // 16))
    elif path == "/orphan":
        await _respond(send, str(orphan()).encode())
        return
    await _respond(send, str(os.getpid()).encode())


def dying_factory() -> Any:
    print(f"app: worker {os.getpid()} dies while booting", file=sys.stderr, flush=True)
    os._exit(1)
