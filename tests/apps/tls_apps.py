"""The ASGI app of the TLS tests: it answers with what its scope says about the connection
(scheme, the `tls` extension) and which worker served it."""

from __future__ import annotations

import json
import os
from typing import Any

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    view = {
        "scheme": scope["scheme"],
        "tls": scope.get("extensions", {}).get("tls"),
        "pid": os.getpid(),
    }
    body = json.dumps(view).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
