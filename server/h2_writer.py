"""The writer of one HTTP/2 connection: the only code that feeds h2.connection.H2Connection
and writes what it produces.

Rules: the session (server.h2_connection) owns one H2Writer and hands it to whoever must tell
the client something: its streams (server.h2_stream.StreamWriter), the stream table
(server.h2_streams) and the ending (server.h2_ending). Reading is the session's: it alone
calls h2's receive_data. Response bodies waiting for window are the writer's Outbound
(server.h2_outbound); what becomes of a stream once its response is out, or once h2 no longer
knows it, the writer tells its session (WriterEvents). Nothing is written once the connection
is `closed` or its last frame (`final`, a GOAWAY with no stream open) is out.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import NoSuchStreamError
from hyperframe.frame import GoAwayFrame

from serve.server import h2_scope
from serve.server.h2_outbound import Outbound, Sent
from serve.server.h2_stream import H2Stream

_WHOLE, _GONE = Sent.WHOLE, Sent.GONE


class WriterEvents(Protocol):
    """What the writer tells its session (server.h2_connection.H2Session) about a stream."""

    def stream_sent(self, stream: H2Stream) -> None: ...
    def stream_gone(self, stream: H2Stream) -> None: ...


class H2Writer:
    __slots__ = (
        "_events",
        "_loop",
        "closed",
        "conn",
        "final",
        "flush_due",
        "outbound",
        "transport",
        "write_paused",
    )

    def __init__(
        self, conn: H2Connection, transport: asyncio.Transport, events: WriterEvents
    ) -> None:
        self.conn = conn
        self.transport = transport
        self._events = events
        self._loop = asyncio.get_running_loop()
        # A write_out() is scheduled for this turn of the loop (write_soon).
        self.flush_due = False
        self.write_paused = False
        self.closed = False
        self.final = False
        # Streams whose response body waits for window (or for the app's next message).
        self.outbound = Outbound(conn)

    def write_out(self) -> None:
        self.flush_due = False
        data = self.conn.data_to_send()
        if data and not self.closed and not self.final:
            self.transport.write(data)

    def write_soon(self) -> None:
        """What h2 has ready goes out when the loop next runs its callbacks, with what the
        other streams add meanwhile: the responses a turn of the loop completes on this
        connection leave in one write, not one each (h2load -m4: a quarter of the writes)."""
        if not self.flush_due:
            self.flush_due = True
            self._loop.call_soon(self.write_out)

    def send_head(self, stream_id: int, fields: h2_scope.Fields, end_stream: bool) -> None:
        self.conn.send_headers(stream_id, fields, end_stream=end_stream)

    def answer(self, stream_id: int, fields: h2_scope.Fields, body: bytes) -> None:
        """A whole response of the server's own, in one go (no flow control to wait for)."""
        self.conn.send_headers(stream_id, fields)
        self.conn.send_data(stream_id, body, end_stream=True)

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        with contextlib.suppress(NoSuchStreamError):
            self.conn.reset_stream(stream_id, code)

    def write_goaway(self, last_stream_id: int, final: bool) -> None:
        """GOAWAY NO_ERROR after what h2 has queued; `final`: nothing is written after it.
        Written beside h2: h2's own close_connection would stop the streams still open."""
        self.write_out()
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self.transport.write(frame.serialize())
        self.final = final

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.conn.acknowledge_received_data(size, stream_id)
            self.write_out()

    def pump(self, stream: H2Stream) -> None:
        """Send what `stream` has queued as far as the windows allow."""
        if self.closed:
            return
        self.outbound.add(stream)
        if not self.write_paused:
            self._send_queued(stream)
        self.write_soon()

    def pump_all(self) -> None:
        """The windows opened (WINDOW_UPDATE, SETTINGS) or writes resumed."""
        if not self.write_paused and not self.closed:
            for stream in list(self.outbound.sending.values()):
                self._send_queued(stream)
            self.write_out()

    def _send_queued(self, stream: H2Stream) -> None:
        sent = self.outbound.send(stream, self.write_paused)
        if sent is _WHOLE:
            self._events.stream_sent(stream)
        elif sent is _GONE:
            self._events.stream_gone(stream)
