"""The HTTP answer to a WebSocket handshake, and its accounting as one request.

Rules: the handshake is an HTTP/1.1 GET; its answer is `101 Switching Protocols` when the app
accepts, else a denial: 403 when the app closes first, 500 when it fails first, or the app's
own response (the websocket.http.response extension). The head is built by
server.ws_handshake; the answer, once its status is out, is counted by the worker like any
request (WorkerContext.finish_request reads scope, status, bytes_sent and start_time).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from serve.server import h1_writer as w
from serve.server import ws_handshake as hs
from serve.server.types import Message, Scope

if TYPE_CHECKING:
    from serve.server.context import WorkerContext


class HandshakeReply:
    __slots__ = (
        "_ctx",
        "_denial",
        "_extensions_header",
        "_offer",
        "_transport",
        "bytes_sent",
        "scope",
        "start_time",
        "status",
    )

    def __init__(
        self,
        ctx: WorkerContext,
        transport: asyncio.Transport,
        scope: Scope,
        offer: hs.ClientOffer,
        extensions_header: bytes | None,
    ) -> None:
        self._ctx = ctx
        self._transport = transport
        self.scope = scope
        self._offer = offer
        # The permessage-deflate answer, when the client offered it and we take it.
        self._extensions_header = extensions_header
        # The app's denial head until it is out; (0, []) after.
        self._denial: tuple[int, list[tuple[bytes, bytes]]] = (403, [])
        self.start_time = time.perf_counter()
        self.status = 0
        # A 101 and the app's own denial count as no body bytes.
        self.bytes_sent = 0

    def accept(self, message: Message) -> None:
        """websocket.accept: the 101, with the subprotocol and headers the app chose."""
        response = hs.accept_response(
            self._offer,
            message.get("subprotocol"),
            self._extensions_header,
            message.get("headers") or (),
            self._ctx.date_block,
        )
        self._transport.write(response)
        self._answered(101)

    def refuse(self, status: int) -> None:
        """The server's own denial: 403 (the app closed first) or 500 (the app failed)."""
        self._transport.write(w.error_response(status, self._ctx.date_block))
        # Its body is the server's, counted as every answer written in an app's place.
        self.bytes_sent = len(w.error_body(status))
        self._answered(status)

    def start_denial(self, message: Message) -> None:
        """websocket.http.response.start: kept until the first body message."""
        self._denial = (int(message["status"]), list(message.get("headers", ())))

    def denial_body(self, message: Message) -> bool:
        """websocket.http.response.body; True while more body follows."""
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        status, headers = self._denial
        if status:
            date = self._ctx.date_block
            head = hs.denial_head(status, headers, None if more else len(body), date)
            self._denial = (0, [])
            self._transport.write(head + body)
            self._answered(status)
        else:
            self._transport.write(body)
        return more

    def _answered(self, status: int) -> None:
        self.status = status
        self._ctx.finish_request(self)
