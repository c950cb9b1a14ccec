"""WebSocket endpoints the integration tests serve: Starlette, FastAPI and a raw ASGI app.

Each endpoint prints what it saw (`app: ...` on stderr) so a test can read it in the log.
"""

from __future__ import annotations

import json
from typing import Any

from app_helpers import log
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute


async def echo(websocket: WebSocket) -> None:
    """Echo text as text and bytes as bytes until the client leaves."""
    await websocket.accept()
    log(f"ws open {websocket.url.path}")
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                log(f"ws disconnect {message['code']}")
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        log(f"ws disconnect {exc.code}")


async def close_with_code(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(code=4001, reason="bye")


async def deny(websocket: WebSocket) -> None:
    await websocket.close()


async def deny_with_response(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("members only", status_code=401))


async def fail_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("the app broke")


starlette_app = Starlette(
    routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/close", close_with_code),
        WebSocketRoute("/deny", deny),
        WebSocketRoute("/deny-http", deny_with_response),
        WebSocketRoute("/fail", fail_after_accept),
    ]
)

fastapi_app = FastAPI()


@fastapi_app.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str, name: str = "anon") -> None:
    """Pick the best subprotocol the client offers; prefix each echo with room and name."""
    offered = websocket.scope["subprotocols"]
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
    await websocket.accept(subprotocol=chosen)
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{room}/{name}: {text}")
    except WebSocketDisconnect as exc:
        log(f"room disconnect {exc.code}")


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI: accept, send the scope as JSON, then report the disconnect code."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    view = {
        key: scope[key]
        for key in ("type", "asgi", "http_version", "scheme", "path", "root_path", "subprotocols")
    }
    view["query_string"] = scope["query_string"].decode()
    view["raw_path"] = scope["raw_path"].decode()
    view["extensions"] = sorted(scope.get("extensions", {}))
    view["headers"] = {k.decode(): v.decode() for k, v in scope["headers"]}
    await send({"type": "websocket.send", "text": json.dumps(view)})
    message = await receive()
    log(f"scope app {message['type']} {message.get('code')}")


async def ticker(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI: accept, then send 64 KiB messages until a send raises; report which."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    log("ticker accepted")
    sent = 0
    while True:
        try:
            await send({"type": "websocket.send", "bytes": b"x" * 65536})
        except OSError as exc:
            log(f"ticker send raised {type(exc).__name__} after {sent} messages")
            return
        sent += 1
