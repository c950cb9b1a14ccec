"""What a connection is, as its requests see it: its two addresses, its scheme and TLS facts,
and whether a proxy we trust stands in front of it.

Rules: a leaf (nothing here imports a protocol module). The record is computed once per
connection, from the transport, by the protocol that accepts it (H1Connection, or the HTTP/2
session of a connection refused over limit_concurrency) and handed unchanged to the HTTP/2
or WebSocket connection that takes the transport over; scopes read it (server.scope).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from serve.server.proxy import ProxyTrust
from serve.server.tls import tls_extension

Address = tuple[str, int]


def inet_address(info: object) -> Address | None:
    """(host, port) of a sockname/peername extra-info value; None for a unix socket."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    # ASGI's `server`: for a unix socket its path, with port 0.
    server: Address
    # ASGI's `client`: None for a unix socket.
    client: Address | None
    scheme: str  # "http" or "https"; a WebSocket scope says "ws" or "wss"
    # The ASGI TLS extension's content; None in cleartext.
    tls: dict[str, object] | None
    # The peer is a proxy in forwarded_allow_ips: its forwarding fields are believed.
    trusted: bool

    @classmethod
    def of(cls, transport: asyncio.BaseTransport, proxy: ProxyTrust | None) -> ConnectionInfo:
        sockname = transport.get_extra_info("sockname")
        client = inet_address(transport.get_extra_info("peername"))
        ssl_object = transport.get_extra_info("ssl_object")
        return cls(
            inet_address(sockname) or (str(sockname), 0),
            client,
            "http" if ssl_object is None else "https",
            None if ssl_object is None else tls_extension(ssl_object),
            proxy is not None and proxy.trusts(client[0] if client else None),
        )
