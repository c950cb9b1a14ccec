"""The ASGI scope of a request, once for HTTP/1.1, HTTP/2 and WebSocket.

Rules: no IO; a scope is built from the worker's context (root_path, lifespan state, proxy
trust), the connection's facts (server.connection_info) and the protocol-neutral request
head (server.events). Forwarding fields are believed only from a trusted peer, and looked
for only then. Hot path (once per HTTP request): one dict literal, no call unless the
connection is trusted or TLS.
"""

from __future__ import annotations

from dataclasses import replace
from operator import itemgetter
from typing import TYPE_CHECKING

from serve.server.connection_info import ConnectionInfo
from serve.server.events import RequestHead
from serve.server.proxy import FORWARDING_FIELDS
from serve.server.types import Scope

if TYPE_CHECKING:
    from serve.server.context import WorkerContext

# Spec 2.4: send() raises an OSError once the client is gone (server.errors.ClientDisconnected).
ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}
_WS_SCHEMES = {"http": "ws", "https": "wss"}
_field_name = itemgetter(0)


def http_scope(ctx: WorkerContext, info: ConnectionInfo, head: RequestHead) -> Scope:
    """The `http` scope of one request (http_version as the head says: 1.0, 1.1 or 2)."""
    client, scheme, headers = info.client, info.scheme, head.headers
    if info.trusted and not FORWARDING_FIELDS.isdisjoint(map(_field_name, headers)):
        assert ctx.proxy is not None
        client, scheme = ctx.proxy.resolve(client, scheme, headers)
    root_path = ctx.root_path
    # A state of its own per request (spec 2.4: a shallow copy); no call when it is empty.
    state = ctx.lifespan_state
    scope = {
        "type": "http",
        "asgi": ASGI_INFO,
        "http_version": head.http_version,
        "server": info.server,
        "client": client,
        "scheme": scheme,
        "method": head.method,
        "root_path": root_path,
        "path": root_path + head.path if root_path else head.path,
        "raw_path": ctx.root_path_bytes + head.raw_path if root_path else head.raw_path,
        "query_string": head.query_string,
        "headers": headers,
        "state": state.copy() if state else {},
    }
    if info.tls is not None:
        scope["extensions"] = {"tls": info.tls}
    return scope


def websocket_scope(
    ctx: WorkerContext, info: ConnectionInfo, head: RequestHead, subprotocols: list[str]
) -> Scope:
    """The `websocket` scope (spec 2.4) of an upgrade request."""
    # Forwarded protos then map onto ws/wss (server.proxy keeps a ws scheme a ws one).
    scope = http_scope(ctx, replace(info, scheme=_WS_SCHEMES[info.scheme]), head)
    scope["type"] = "websocket"
    del scope["method"]
    scope["subprotocols"] = subprotocols
    extensions: dict[str, object] = {"websocket.http.response": {}}
    if info.tls is not None:
        extensions["tls"] = info.tls
    scope["extensions"] = extensions
    return scope
