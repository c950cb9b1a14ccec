"""The app's side of one WebSocket: its task, its send(), and what the app's end means.

Rules: the connection (server.ws_connection) owns the states, the frames and the transport;
this side turns the app's messages into the connection's steps, in the state the connection
is in: websocket.accept and websocket.close before the 101 (answered by its HandshakeReply),
websocket.send and websocket.close after, the websocket.http.response extension instead.
Once the connection is CLOSED, send() raises ClientDisconnected, an OSError (ASGI spec
2.4); ASGI misuse raises RuntimeError into the app. An app that fails before accepting is
answered 500; one that returns (or fails) while open closes with 1000 (or 1011).
"""

from __future__ import annotations

import asyncio
import logging

from serve.server.errors import ClientDisconnected
from serve.server.types import ASGIApp, Message, Scope
from serve.server.ws_connection import INTERNAL_ERROR, NORMAL, WebSocketConnection, WSState

logger = logging.getLogger("serve")


class WebSocketApp:
    __slots__ = ("conn", "scope", "task")

    def __init__(self, conn: WebSocketConnection, scope: Scope) -> None:
        self.conn = conn
        self.scope = scope
        # The app's task (WorkerContext.app_started).
        self.task: asyncio.Task[None] | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self.conn
        state = conn.state
        if state is WSState.OPEN:
            if kind == "websocket.send":
                conn.send_data(message)
                await conn.flow.drain()
                if conn.state is WSState.CLOSED:
                    raise ClientDisconnected("the WebSocket closed before the client read it")
                return
            if kind == "websocket.close":
                conn.start_close(int(message.get("code") or NORMAL), message.get("reason") or "")
                return
        elif state is WSState.HANDSHAKE:
            if kind == "websocket.accept":
                conn.reply.accept(message)
                conn.opened()
                return
            if kind == "websocket.close":
                conn.reply.refuse(403)
                conn.closed()
                return
            if kind == "websocket.http.response.start":
                conn.reply.start_denial(message)
                conn.denying()
                return
        elif state is WSState.DENYING:
            if kind == "websocket.http.response.body":
                if not conn.reply.denial_body(message):
                    conn.closed()
                return
        else:
            raise ClientDisconnected(f"{kind!r} sent on a closed WebSocket")
        raise RuntimeError(f"unexpected ASGI message {kind!r} in WebSocket state {state.name}")

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.conn.inbox.receive, self.send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the app's failure must never take the worker down
            if isinstance(exc, ClientDisconnected):
                logger.debug("WebSocket app ended after its client left: %s", exc)
            else:
                logger.error("exception in the ASGI app (websocket)", exc_info=exc)
            self.app_ended(INTERNAL_ERROR)
        else:
            if self.conn.state is WSState.HANDSHAKE:
                logger.error("ASGI app returned without accepting or closing the WebSocket")
            self.app_ended(NORMAL)
        finally:
            self.conn.ctx.app_finished(self)

    def app_ended(self, code: int) -> None:
        conn = self.conn
        state = conn.state
        if state is WSState.HANDSHAKE:
            conn.reply.refuse(500)
            conn.closed()
        elif state is WSState.OPEN:
            conn.start_close(code, "")
        elif state is WSState.DENYING:
            # The denial response is unfinished: only closing the connection can end it.
            conn.closed()
