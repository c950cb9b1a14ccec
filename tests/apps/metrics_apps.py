"""An ASGI app for the metrics tests: supervisor_apps.app, plus /status/NNN answering NNN.

/slow (from supervisor_apps) holds a request for a second, so its duration lands in a
known part of the histogram.
"""

from __future__ import annotations

from typing import Any

import supervisor_apps


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope.get("path", "")
    if scope["type"] != "http" or not path.startswith("/status/"):
        await supervisor_apps.app(scope, receive, send)
        return
    status = int(path.removeprefix("/status/"))
    body = f"status {status}\n".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
