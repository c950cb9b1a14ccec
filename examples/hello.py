"""The smallest useful ASGI 3 app: "Hello, world!" as text/plain, with lifespan support.

Run it with `make run` (configs/example.yaml) or `serve examples.hello:app`.
"""

from __future__ import annotations

from serve.server.types import Receive, Scope, Send

BODY = b"Hello, world!"
HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    else:
        raise ValueError(f"unsupported scope type {scope['type']!r}")


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up; answering the lifespan messages lets `lifespan: on` work.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
