"""How a connection becomes HTTP/2: from the dispatch (ALPN h2, the cleartext preface) or
from an HTTP/1.1 `Upgrade: h2c` request (RFC 7540 section 3.2).

Rules: like the WebSocket hand-over (server.ws_handover), the transport gets a new protocol, an
H2Session, which registers with the worker in place of the H1Connection. An h2c upgrade
needs exactly one HTTP2-Settings field that h2 can read; its request becomes stream 1,
answered over HTTP/2 after `101 Switching Protocols`. Otherwise the request gets 400 (503
while the worker drains) and the connection closes: the HTTP/1.1 parser has already stopped
at the upgrade, so serving it as HTTP/1.1 is no longer possible.
An HTTP/2 connection accepted over limit_concurrency (ALPN h2, or cleartext with the
preface) becomes an H2Session that answers its first request 503 (server.h2_ending).
"""

from __future__ import annotations

import asyncio
import binascii
import logging

from h2.exceptions import ProtocolError

from serve.server import h1_writer as w
from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.events import RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_refusal import refuse_upgrade
from serve.server.h2_connection import H2Session

logger = logging.getLogger("serve")

_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
# Fields of an h2c upgrade request that were about the HTTP/1.1 hop only.
_UPGRADE_FIELDS = frozenset((b"connection", b"upgrade", b"http2-settings", b"keep-alive"))


def take_over(
    ctx: WorkerContext,
    transport: asyncio.Transport,
    flow: FlowControl,
    info: ConnectionInfo,
) -> H2Session:
    """Make an accepted connection an HTTP/2 one; the caller then calls begin()."""
    session = H2Session(ctx, transport, flow, info)
    session.attach()
    return session


def take_over_over_limit(ctx: WorkerContext, transport: asyncio.Transport, data: bytes) -> None:
    """An HTTP/2 connection accepted over limit_concurrency (ALPN h2, or the preface in
    `data`): see server.h2_ending."""
    # Its requests get 503 without the app, so no proxy's word on its client is needed.
    info = ConnectionInfo.of(transport, None)
    session = H2Session(ctx, transport, FlowControl(transport), info)
    session.over_limit = True
    session.attach()
    session.begin(data)


def take_over_upgrade(
    ctx: WorkerContext,
    transport: asyncio.Transport,
    flow: FlowControl,
    head: RequestHead,
    *,
    info: ConnectionInfo,
    data: bytes,
) -> None:
    """Serve an HTTP/1.1 `Upgrade: h2c` request as stream 1 of a new HTTP/2 connection."""
    values = [value for name, value in head.headers if name == b"http2-settings"]
    status = 503 if ctx.draining else 400
    if len(values) == 1 and not ctx.draining:
        session = H2Session(ctx, transport, flow, info)
        try:
            session.conn.initiate_upgrade_connection(values[0])
        except (ProtocolError, binascii.Error, ValueError):
            pass
        else:
            _begin_upgraded(session, head, data)
            return
    logger.debug("h2c upgrade from %s refused with %d", info.client, status)
    response = w.error_response(status, ctx.date_block)
    refuse_upgrade(ctx, transport, info, head, status=status, response=response)


def _begin_upgraded(session: H2Session, head: RequestHead, data: bytes) -> None:
    session.attach()
    session.transport.write(_SWITCHING)
    session.open_connection_window()
    session.writer.write_out()
    headers = [field for field in head.headers if field[0] not in _UPGRADE_FIELDS]
    head = RequestHead(
        head.method, head.target, head.path, head.raw_path, head.query_string, "2",
        headers, True, False, None, False,
    )  # fmt: skip
    session.streams.start(1, head)
    if data:
        session.data_received(data)
