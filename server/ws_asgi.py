"""The app's side of one WebSocket: its send(), and what the app's end means.

Rules: the connection (server.ws_connection) owns the states, the frames and the transport;
this side turns the app's messages into the connection's steps, in the state the connection
is in: websocket.accept and websocket.close before the 101 (answered by its HandshakeReply),
websocket.send and websocket.close after, the websocket.http.response extension instead.
The app runs through server.app_run like an HTTP request's, which logs its failure and
builds the errors send() raises: ClientDisconnected, an OSError (ASGI spec 2.4), once the
connection is closing or closed, RuntimeError for ASGI misuse. An app that fails before
accepting is answered 500; one that returns (or fails) while open closes with 1000 (or 1011).
"""

from __future__ import annotations

import asyncio

from serve.server.app_run import (
    closed_while_sending,
    returned_unfinished,
    sent_after_close,
    unexpected,
)
from serve.server.types import Message, Scope
from serve.server.ws_connection import INTERNAL_ERROR, NORMAL, WebSocketConnection, WSState

# What the app may send in each state it can send in.
_EXPECTED = {
    WSState.HANDSHAKE: "'websocket.accept', 'websocket.close' or 'websocket.http.response.start'",
    WSState.OPEN: "'websocket.send' or 'websocket.close'",
    WSState.DENYING: "'websocket.http.response.body'",
}


class WebSocketApp:
    __slots__ = ("conn", "receive", "scope", "task")

    def __init__(self, conn: WebSocketConnection, scope: Scope) -> None:
        self.conn = conn
        self.scope = scope
        self.receive = conn.inbox.receive
        # The app's task (WorkerContext.app_started).
        self.task: asyncio.Task[None] | None = None

    @property
    def disconnected(self) -> bool:
        """Closing or closed: nothing the app sends can reach the client any more."""
        state = self.conn.state
        return state is WSState.CLOSING or state is WSState.CLOSED

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self.conn
        state = conn.state
        if state is WSState.OPEN:
            if kind == "websocket.send":
                conn.send_data(message)
                await conn.flow.drain()
                if conn.state is WSState.CLOSED:
                    raise closed_while_sending(kind)
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
            # CLOSING (our close frame is out: nothing more can go) or CLOSED.
            raise sent_after_close(kind)
        raise unexpected(kind, _EXPECTED[state])

    def app_ended(self, failed: bool) -> None:
        conn = self.conn
        state = conn.state
        if state is WSState.HANDSHAKE:
            if not failed:
                returned_unfinished("the WebSocket handshake")
            conn.reply.refuse(500)
            conn.closed()
        elif state is WSState.OPEN:
            conn.start_close(INTERNAL_ERROR if failed else NORMAL, "")
        elif state is WSState.DENYING:
            # The denial response is unfinished: only closing the connection can end it.
            conn.closed()
