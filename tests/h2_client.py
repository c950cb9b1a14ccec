"""A raw HTTP/2 client on a plain socket, driven by the h2 library: what the HTTP/2 tests
need beyond httpx and curl (odd windows, floods, reading GOAWAY, frames h2 would not send).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes


class RawH2:
    def __init__(
        self,
        port: int,
        *,
        window: int | None = None,
        timeout: float = 10.0,
        upgrade: bytes | None = None,
    ) -> None:
        """Prior knowledge; or, with `upgrade` (an HTTP/1.1 request head without its final
        CRLF), `Upgrade: h2c` from that request, which becomes stream 1."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.events: list[ev.Event] = []
        self.closed = False
        self.switched = b""
        # Bytes read with the 101 that belong to HTTP/2.
        self.pending = b""
        if upgrade is not None:
            self._upgrade(upgrade)
            return
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()

    def _upgrade(self, head: bytes) -> None:
        settings = self.conn.initiate_upgrade_connection()
        fields = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "
        self.sock.sendall(head + fields + settings + b"\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed after {data!r}"
            data += chunk
        self.switched, _, rest = data.partition(b"\r\n\r\n")
        if not self.switched.startswith(b"HTTP/1.1 101 "):
            return
        self.flush()
        self.pending = rest

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True

    def send_raw(self, data: bytes) -> None:
        self.flush()
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def request(
        self, path: str, method: str = "GET", *, end: bool = True, extra: tuple = ()
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            *extra,
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream_id

    def read_until(self, done: Callable[[ev.Event], bool]) -> ev.Event | None:
        """Read and record events until one satisfies `done` (returned) or the server closes
        the connection (None)."""
        while not self.closed:
            try:
                data, self.pending = self.pending or self.sock.recv(65536), b""
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except ProtocolError:
                # h2 reads nothing after a GOAWAY; the tests have what they need by then.
                self.closed = True
                break
            self.events += events
            self.flush()
            found = [event for event in events if done(event)]
            if found:
                return found[0]
        return None

    def response(self, stream_id: int, *, acknowledge: bool = True) -> tuple[int, bytes, dict]:
        """(status, body, trailers) of a stream, granting window as the body arrives."""
        status, body, trailers = 0, bytearray(), {}

        def collect(event: ev.Event) -> bool:
            nonlocal status
            if getattr(event, "stream_id", None) != stream_id:
                return False
            if isinstance(event, ev.ResponseReceived):
                status = int(dict(event.headers or [])[b":status"])
            elif isinstance(event, ev.DataReceived):
                body.extend(event.data or b"")
                if acknowledge:
                    size = event.flow_controlled_length or 0
                    self.conn.acknowledge_received_data(size, stream_id)
            elif isinstance(event, ev.TrailersReceived):
                trailers.update(dict(event.headers or []))
            return isinstance(event, (ev.StreamEnded, ev.StreamReset))

        self.read_until(collect)
        return status, bytes(body), trailers

    def ping(self) -> None:
        """Round trip: every frame the server sent before its PING ACK has been read."""
        self.conn.ping(b"12345678")
        self.flush()
        self.read_until(lambda event: isinstance(event, ev.PingAckReceived))

    def goaway(self) -> ev.ConnectionTerminated | None:
        event = self.read_until(lambda e: isinstance(e, ev.ConnectionTerminated))
        return event if isinstance(event, ev.ConnectionTerminated) else None

    def close(self) -> None:
        self.sock.close()
