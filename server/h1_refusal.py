"""An upgrade request (WebSocket, h2c) that serve answers itself, as plain HTTP/1.1.

Rules: shared by both handovers (server.ws_handover, server.h2_handover), which import it;
it imports neither. The answer is the request's response like any other: counted and
logged (WorkerContext.finish_request) with the request line the head gave.
"""

from __future__ import annotations

import asyncio

from serve.server.connection_info import ConnectionInfo
from serve.server.context import ServerAnswer, WorkerContext
from serve.server.events import RequestHead
from serve.server.h1_writer import error_body
from serve.server.scope import http_scope


def refuse_upgrade(
    ctx: WorkerContext,
    transport: asyncio.Transport,
    info: ConnectionInfo,
    head: RequestHead,
    *,
    status: int,
    response: bytes,
) -> None:
    """Answer the upgrade head with the server's own `response` (`status`, as plain HTTP)
    and close: counted and logged as that request's response."""
    ctx.finish_request(ServerAnswer(http_scope(ctx, info, head), status, len(error_body(status))))
    transport.write(response)
    transport.close()
