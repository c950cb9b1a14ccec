"""One HTTP/2 GET over cleartext with prior knowledge (RFC 9113 section 3.3), for the h2 answer
probe and the readiness check of servers launched for HTTP/2.

Rules:
- The h2 library frames the requests: an independent client, so a server is judged by what a
  real HTTP/2 peer receives, never by bytes this harness builds itself.
- One connection per call, closed on return; only GET without a body, the only request the
  h2 scenarios send (h2load sends it unchanged for the whole run).
- Anything short of a complete response (refused, reset, closed, timed out, framing the
  library rejects) raises OSError or h2's ProtocolError; the caller decides what that means.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events

_STREAM = 1
_READ_BYTES = 65536


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def get(port: int, path: str, timeout_s: float) -> Answer:
    """GET `path` from 127.0.0.1:port over h2c; returns once stream 1 has ended."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
        (":path", path),
    ]
    conn.send_headers(_STREAM, headers, end_stream=True)
    status = 0
    body = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(_READ_BYTES)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = _status(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    # Keeps the windows open for a body larger than the initial 64 KiB.
                    conn.acknowledge_received_data(event.flow_controlled_length, _STREAM)
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"stream reset, error code {event.error_code}")
                elif isinstance(event, h2.events.StreamEnded):
                    return Answer(status, bytes(body))
            sock.sendall(conn.data_to_send())


def _status(headers: Iterable[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b":status":
            return int(value)
    raise ConnectionError("response without :status")
