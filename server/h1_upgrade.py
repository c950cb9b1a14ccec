"""Where an HTTP/1.1 connection goes after an Upgrade head: HTTP/2 (h2c) or WebSocket.

Rules: the parser has stopped at the end of the upgrade head, and the H1Connection has left
the worker's connections; the successor registers itself. Each successor's module is
imported on the first upgrade of its kind: a worker that serves no WebSocket never loads
wsproto, one that sees no h2c upgrade never loads h2.
"""

from __future__ import annotations

import asyncio

from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.events import RequestHead
from serve.server.flow import FlowControl


def hand_over(
    ctx: WorkerContext,
    transport: asyncio.Transport,
    flow: FlowControl,
    head: RequestHead,
    *,
    info: ConnectionInfo,
    data: bytes,
) -> None:
    """Give the transport, and `data` (what followed the head), to the protocol asked for."""
    if head.upgrade == b"h2c":
        from serve.server.h2_handover import take_over_upgrade

        take_over_upgrade(ctx, transport, flow, head, info=info, data=data)
        return
    from serve.server.ws_handover import take_over

    take_over(ctx, transport, flow, head, info=info, data=data)
