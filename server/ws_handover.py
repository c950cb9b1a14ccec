"""WebSockets (RFC 6455) over HTTP/1.1: the hand-over from the HTTP/1.1 side.

Rules: there is one HTTP/1.1 implementation. server.h1_parser parses the upgrade request
and, for the Upgrade tokens in WSSettings.upgrades, stops at the end of its head;
server.h1_connection then calls take_over() with the transport, its FlowControl, the
RequestHead, the connection's facts and the bytes that followed the head, and from then on
a WebSocketConnection (server.ws_connection) is the transport's protocol. The handshake is
checked and answered by server.ws_handshake; the frames are wsproto's. Nothing here parses
HTTP or frames.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from serve.server import h1_writer as w
from serve.server import ws_handshake as hs
from serve.server.app_run import run_app
from serve.server.connection_info import ConnectionInfo
from serve.server.events import RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_refusal import refuse_upgrade
from serve.server.scope import websocket_scope
from serve.server.ws_asgi import WebSocketApp
from serve.server.ws_connection import WebSocketConnection

if TYPE_CHECKING:
    from serve.server.context import WorkerContext

logger = logging.getLogger("serve")


def take_over(
    ctx: WorkerContext,
    transport: asyncio.Transport,
    flow: FlowControl,
    head: RequestHead,
    *,
    info: ConnectionInfo,
    data: bytes,
) -> None:
    """Serve a GET with `Upgrade: websocket` on this transport from now on.

    `data` is what the client sent after the request head (normally nothing: RFC 6455 §4.1
    has it wait for the 101). A request that is not a valid handshake, or one that arrives
    while the worker drains, is answered as plain HTTP and the connection closes.
    """
    try:
        offer = hs.read_offer(head)
    except hs.HandshakeRejected as exc:
        logger.debug("bad WebSocket handshake from %s: %s", info.client, exc.reason)
        response = hs.rejection(exc, ctx.date_block)
        refuse_upgrade(ctx, transport, info, head, status=exc.status, response=response)
        return
    if ctx.draining:
        response = w.error_response(503, ctx.date_block)
        refuse_upgrade(ctx, transport, info, head, status=503, response=response)
        return
    scope = websocket_scope(ctx, info, head, offer.subprotocols)
    conn = WebSocketConnection(
        ctx, ctx.settings.ws, transport=transport, flow=flow, scope=scope, offer=offer, data=data
    )
    transport.set_protocol(conn)
    ctx.connection_opened(conn)
    app = WebSocketApp(conn, scope)
    ctx.app_started(app, ctx.loop.create_task(run_app(ctx.app, app, ctx)))
