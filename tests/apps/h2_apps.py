"""The ASGI app the HTTP/2 tests serve; each path exercises one behaviour.

State shared between requests (a gate, a progress counter) lives in this worker's memory:
the tests run one worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs

from app_helpers import log, read_body

Scope = dict[str, Any]
CHUNK = 64 * 1024

_gate = asyncio.Event()
_progress = {"chunks": 0}


async def respond(send: Any, body: bytes, status: int = 200, **start: Any) -> None:
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers, **start})
    await send({"type": "http.response.body", "body": body})


def query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def scope_view(scope: Scope, receive: Any, send: Any) -> None:
    view = {
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "extensions": sorted(scope.get("extensions", {})),
    }
    await respond(send, json.dumps(view).encode())


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Echo the request body as it arrives, one response chunk per request chunk."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        body = message.get("body", b"")
        more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": body, "more_body": more})
        if not more:
            return


async def stream(scope: Scope, receive: Any, send: Any) -> None:
    count = int(query(scope).get("n", "3"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(count):
        await send({"type": "http.response.body", "body": b"part %d\n" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def trailers(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"body with trailers", "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    trailer = [(b"x-checksum", b"abc123")]
    await send({"type": "http.response.trailers", "headers": trailer, "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"x-done", b"yes")]})


async def big(scope: Scope, receive: Any, send: Any) -> None:
    """Stream n chunks, counting each send() that returned (the client's reading shows)."""
    count = int(query(scope).get("n", "100"))
    _progress["chunks"] = 0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(count):
        await send({"type": "http.response.body", "body": b"b" * CHUNK, "more_body": True})
        _progress["chunks"] += 1
    await send({"type": "http.response.body", "body": b""})


async def gated_upload(scope: Scope, receive: Any, send: Any) -> None:
    """Read nothing until /release, then count the body."""
    log("upload waiting")
    await _gate.wait()
    _gate.clear()
    body = await read_body(receive)
    await respond(send, str(len(body)).encode())


async def slow(scope: Scope, receive: Any, send: Any) -> None:
    log("slow started")
    await asyncio.sleep(float(query(scope).get("s", "1")))
    await respond(send, b"slow done")


async def error_after_start(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom after start")


async def count(scope: Scope, receive: Any, send: Any) -> None:
    """Read the whole body, answer its length."""
    await respond(send, str(len(await read_body(receive))).encode())


async def headers_out(scope: Scope, receive: Any, send: Any) -> None:
    """Mixed-case names and HTTP/1.1 connection-specific fields, as an HTTP/1.1 app sends."""
    headers = [
        (b"X-Mixed-Case", b"kept"),
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"TE", b"gzip"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"stripped"})


async def declared_length(scope: Scope, receive: Any, send: Any) -> None:
    """Content-Length 6 and the body parts of ?parts=a,b (what the app sends, not 6 bytes)."""
    parts = query(scope)["parts"].split(",")
    headers = [(b"content-length", b"6")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index, part in enumerate(parts):
        more = index < len(parts) - 1
        await send({"type": "http.response.body", "body": part.encode(), "more_body": more})


async def until_disconnect(scope: Scope, receive: Any, send: Any) -> None:
    """Read until http.disconnect, then try to answer: send() must raise an OSError."""
    while (await receive())["type"] != "http.disconnect":
        pass
    log("disconnect seen")
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})
    except OSError as exc:
        log(f"send after the reset raised {type(exc).__name__}")
        raise
    log("send after the reset returned")


async def after_response(scope: Scope, receive: Any, send: Any) -> None:
    """Answer, then receive() once more: the request is over."""
    body = await read_body(receive)
    await respond(send, body)
    log(f"receive after the response: {(await receive())['type']}")


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    routes = {
        "/scope": scope_view,
        "/echo": echo,
        "/stream": stream,
        "/trailers": trailers,
        "/big": big,
        "/gated-upload": gated_upload,
        "/slow": slow,
        "/error-after-start": error_after_start,
        "/count": count,
        "/headers-out": headers_out,
        "/declared-length": declared_length,
        "/until-disconnect": until_disconnect,
        "/after-response": after_response,
    }
    if path in routes:
        await routes[path](scope, receive, send)
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/release":
        _gate.set()
        await respond(send, b"released")
    elif path == "/h2-loaded":
        await respond(send, str("h2" in sys.modules).encode())
    elif path == "/progress":
        await respond(send, str(_progress["chunks"]).encode())
    else:
        await respond(send, b"Hello, world!")
