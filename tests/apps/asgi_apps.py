"""Raw ASGI apps the integration tests serve; each path exercises one server behaviour."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs

from app_helpers import log, read_body

Scope = dict[str, Any]


async def respond(send: Any, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers or [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _scope_json(scope: Scope) -> bytes:
    keys = ("type", "http_version", "method", "scheme", "path", "root_path", "query_string")
    view: dict[str, Any] = {key: scope[key] for key in keys}
    view["raw_path"] = scope["raw_path"].decode("latin-1")
    view["query_string"] = scope["query_string"].decode("latin-1")
    view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    view["client"] = list(scope["client"]) if scope["client"] else None
    view["server"] = list(scope["server"]) if scope["server"] else None
    view["asgi"] = scope["asgi"]
    view["state"] = sorted(scope.get("state", {}))
    return json.dumps(view).encode()


async def lifespan(receive: Any, send: Any, scope: Scope) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = True
            log("lifespan startup complete")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log("lifespan shutdown complete")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def stream(send: Any, count: int) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(count):
        await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def wait_disconnect(receive: Any, send: Any) -> None:
    await read_body(receive)
    message = await receive()
    log(f"received {message['type']}")
    # Sending after the client left raises an OSError (ASGI spec 2.4).
    try:
        await respond(send, 200, b"too late")
    except OSError as exc:
        log(f"send after disconnect raised {type(exc).__name__}")
        raise
    log("send after disconnect returned")


async def stall_upload(receive: Any, send: Any, flag: str) -> None:
    """Read one body message, then stop reading until the test creates `flag`."""
    first = await receive()
    log("upload stalled")
    while not os.path.exists(flag):
        await asyncio.sleep(0.05)
    rest = await read_body(receive) if first.get("more_body") else b""
    await respond(send, 200, str(len(first["body"]) + len(rest)).encode())


async def push(send: Any, flag: str) -> None:
    """Send a head and a chunk, then suspend until the test creates `flag` (a server-sent
    event stream waiting for its next event)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first event\n", "more_body": True})
    while not os.path.exists(flag):
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b"second event\n"})


async def big_stream(send: Any, count: int) -> None:
    """Stream `count` chunks of 64 KiB, logging progress, so a test can see send() block,
    and how the stream ended: a send that raised (the client is gone) or the last chunk."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * 65536
    for i in range(count):
        try:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError as exc:
            log(f"send raised {type(exc).__name__} after chunk {i}")
            return
        log(f"sent chunk {i + 1}")
    await send({"type": "http.response.body", "body": b""})
    log(f"stream of {count} chunks complete")


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send, scope)
        return
    # ASGI: path includes root_path; routing works on what follows it.
    path = scope["path"].removeprefix(scope["root_path"])
    query = parse_qs(scope["query_string"].decode())
    if path.startswith("/scope"):
        await respond(send, 200, _scope_json(scope), [(b"content-type", b"application/json")])
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, 200, body)
    elif path == "/echo-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message["body"], "more_body": more})
            if not more:
                return
    elif path == "/stream":
        await stream(send, int(query.get("n", ["10"])[0]))
    elif path == "/slow":
        log(f"slow request started {scope['query_string'].decode()}")
        await asyncio.sleep(float(query.get("s", ["2"])[0]))
        await respond(send, 200, b"slow done")
    elif path == "/error":
        raise RuntimeError("boom before start")
    elif path == "/error-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/no-response":
        return
    elif path == "/bad-header":
        await respond(send, 200, b"x", [(b"x-injected", b"a\r\nset-cookie: evil=1")])
    elif path == "/too-long":
        await respond(send, 200, b"0123456789", [(b"content-length", b"5")])
    elif path == "/wait-disconnect":
        await wait_disconnect(receive, send)
    elif path == "/stall-upload":
        await stall_upload(receive, send, query["flag"][0])
    elif path == "/push":
        await push(send, query["flag"][0])
    elif path == "/big-stream":
        await big_stream(send, int(query["n"][0]))
    elif path == "/status":
        await respond(send, int(query["code"][0]), b"" if query["code"][0] == "204" else b"body")
    else:
        await respond(send, 200, b"Hello, world!")
