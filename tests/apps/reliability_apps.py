"""The ASGI app the chaos and soak runs serve: request shapes of real traffic, plus two
endpoints that break their worker on purpose.

Every answer carries the worker's pid in an `x-pid` header (tests/load_client.py reads it).
- / answers the pid; /wait answers it after WAIT_S on the event loop, so that requests are
  in flight when a signal lands;
- /download answers DOWNLOAD_BYTES with a Content-Length;
- /stream answers STREAM_CHUNKS body messages of STREAM_CHUNK_BYTES without a length
  (chunked);
- /upload reads the whole request body and answers its length in decimal;
- /leak?mib=N keeps N MiB more memory (touched, so it counts in RSS) until the worker exits;
- /burst?mib=N touches N MiB in 100 KiB blocks, as a burst of request bodies does, and frees
  them before answering;
- /block blocks the event loop in time.sleep far beyond any worker_timeout (it prints
  "app: worker PID blocks its loop" first): the master must abort the worker;
- /memory answers sys.getallocatedblocks(): the Python objects the worker holds, which
  tells a leak of objects from memory the C allocator keeps after a burst of large buffers.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
WAIT_S = 0.02
DOWNLOAD_BYTES = 1024 * 1024
STREAM_CHUNK_BYTES = 8192
STREAM_CHUNKS = 16
BLOCK_S = 300.0
MIB = 1024 * 1024
BURST_BLOCK = 100 * 1024

_DOWNLOAD = b"d" * DOWNLOAD_BYTES
_CHUNK = b"s" * STREAM_CHUNK_BYTES
_leaked: list[bytes] = []


def _head(length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def _respond(send: Any, body: bytes) -> None:
    await send(_head(len(body)))
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Any) -> int:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return size
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


def _leak(query: bytes) -> None:
    mib = int(parse_qs(query.decode()).get("mib", ["8"])[0])
    # A repeated non-zero byte: every page is written, unlike bytes(n) whose zero pages
    # the kernel may never back.
    _leaked.append(b"\x01" * (mib * MIB))


def _burst(query: bytes) -> None:
    mib = int(parse_qs(query.decode()).get("mib", ["8"])[0])
    # Blocks below glibc's mmap threshold (128 KiB) come from the heap, as bodies do.
    blocks = [b"\x01" * BURST_BLOCK for _ in range(mib * MIB // BURST_BLOCK)]
    del blocks


def _block() -> None:
    print(f"app: worker {os.getpid()} blocks its loop", file=sys.stderr, flush=True)
    time.sleep(BLOCK_S)


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/download":
        await _respond(send, _DOWNLOAD)
        return
    if path == "/stream":
        await send(_head(None))
        for _ in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/memory":
        await _respond(send, str(sys.getallocatedblocks()).encode())
        return
    if path == "/upload":
        await _respond(send, str(await _read_body(receive)).encode())
        return
    if path == "/wait":
        await asyncio.sleep(WAIT_S)
    elif path == "/leak":
        _leak(scope["query_string"])
    elif path == "/burst":
        _burst(scope["query_string"])
    elif path == "/block":
        _block()
    await _respond(send, str(os.getpid()).encode())
