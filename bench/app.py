"""The one raw ASGI app every benchmarked server runs (no framework, no project import).

Rules:
- Same bytes from every server: each route's body is fixed, so a server that answers faster
  did less work around the app, not less work in it.
- The app does only what its scenario is about: `/json` serialises per request, `/echo`
  reads the whole body, `/stream` sends ten separate body messages; the static bodies are
  built once at import.
- No dependency on the project: peers import this module without importing serve.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PLAINTEXT = b"Hello, world!"
JSON_DOC = {"message": "Hello, world!", "id": 42, "tags": ["fast", "asgi"], "ok": True}
STREAM_CHUNK = b"x" * 1024
STREAM_CHUNKS = 10
DOWNLOAD = b"d" * (1024 * 1024)

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_PLAIN_HEADERS = [*_TEXT, (b"content-length", str(len(PLAINTEXT)).encode())]
_DOWNLOAD_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(DOWNLOAD)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by path; anything unknown is a 404 so a misrouted benchmark shows as errors."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/":
        await _complete(send, _PLAIN_HEADERS, PLAINTEXT)
    elif path == "/json":
        body = json.dumps(JSON_DOC, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await _complete(send, headers, body)
    elif path == "/echo":
        await _echo(receive, send)
    elif path == "/stream":
        await _stream(send)
    elif path == "/download":
        await _complete(send, _DOWNLOAD_HEADERS, DOWNLOAD)
    else:
        await _complete(send, _TEXT, b"not found", status=404)


async def _complete(
    send: Send, headers: list[tuple[bytes, bytes]], body: bytes, status: int = 200
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _echo(receive: Receive, send: Send) -> None:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % len(body)),
    ]
    await _complete(send, headers, body)


async def _stream(send: Send) -> None:
    # No content-length: every server must frame this itself (chunked on HTTP/1.1).
    await send({"type": "http.response.start", "status": 200, "headers": _TEXT})
    for _ in range(STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
