"""Which protocol an accepted connection speaks, when http2 is enabled.

Rules: the listeners' protocol factory with http2 on (worker.py keeps H1Connection itself
when it is off, so HTTP/1.1 pays nothing for HTTP/2 being possible). Every connection starts
as an H1Connection, which registers it with the worker (limit_concurrency, header_timeout):
- with TLS, ALPN decides once the handshake is done: "h2" hands the transport to HTTP/2,
  which answers a connection over limit_concurrency itself (503 on its first stream, then
  GOAWAY: an HTTP/2 client cannot read the HTTP/1.1 503 the H1Connection would write);
- in cleartext, the first bytes decide: the HTTP/2 connection preface (RFC 9113 section 3.4,
  "prior knowledge") hands it to HTTP/2, anything else goes to the H1Connection, which then
  reads the transport directly. `Upgrade: h2c` is the H1Connection's business. A
  connection over limit_concurrency waits for them too, so that the 503 it gets is one its
  client can read: HTTP/2's on its first stream, or HTTP/1.1's (refused under
  max_connections, it is answered at once: no room means no waiting).
server.h2_connection, and h2 with it, is imported by the first HTTP/2 connection only.
"""

from __future__ import annotations

import asyncio
from typing import cast

from serve.server.context import WorkerContext
from serve.server.h1_connection import H1Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolDispatch(asyncio.Protocol):
    __slots__ = ("buffer", "h1", "over_limit", "transport")

    def __init__(self, ctx: WorkerContext) -> None:
        self.h1 = H1Connection(ctx)
        self.buffer = b""
        # Cleartext, accepted over limit_concurrency: refused once the first bytes decide.
        self.over_limit = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            # Registered now, so that a client that never sends gets the header timeout.
            refusal = self.h1.register(transport)
            if refusal == "limit_concurrency":
                self.over_limit = True
            elif refusal is not None:
                self.h1.requests.answer_without_head(503)
            return
        if ssl_object.selected_alpn_protocol() == "h2":
            ctx = self.h1.ctx
            if ctx.at_concurrency_limit():
                from serve.server.h2_handover import take_over_over_limit

                take_over_over_limit(ctx, self.transport, b"")
                return
            self.h1.connection_made(transport)
            self.to_h2(b"")
        else:
            self.transport.set_protocol(self.h1)
            self.h1.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        data = self.buffer + data
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self.buffer = data
            return
        if data.startswith(PREFACE):
            self.to_h2(data)
            return
        self.buffer = b""
        self.transport.set_protocol(self.h1)
        if self.over_limit:
            self.h1.requests.answer_without_head(503)
            return
        self.h1.data_received(data)

    def to_h2(self, data: bytes) -> None:
        h1 = self.h1
        ctx = h1.ctx
        ctx.connection_handed_over(h1)
        if self.transport.is_closing():
            return  # refused: H1Connection answered 503
        from serve.server.h2_handover import take_over, take_over_over_limit

        if self.over_limit:
            take_over_over_limit(ctx, self.transport, data)
            return
        session = take_over(ctx, self.transport, h1.flow, h1.info)
        session.begin(data)

    # Until the first bytes decide, the H1Connection hears what happens to the transport.
    def connection_lost(self, exc: Exception | None) -> None:
        self.h1.connection_lost(exc)

    def pause_writing(self) -> None:
        self.h1.pause_writing()

    def resume_writing(self) -> None:
        self.h1.resume_writing()
