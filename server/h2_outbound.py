"""HTTP/2 response bodies on their way out: what each stream queued, fed to h2 as far as the
flow-control windows and the frame size allow.

Rules: part of the connection's writer (server.h2_writer), which owns one Outbound and alone
calls it: between them they are the only code that feeds h2. A stream whose window is shut waits
here (its flow paused, so the app's send() waits in drain()) until WINDOW_UPDATE or a
SETTINGS change opens it; `sending` is also what the sweep checks for send_timeout
(server.h2_ending). Ending a stream: END_STREAM rides on the last DATA frame, or on the
trailers' HEADERS, or on an empty DATA frame when the body was already out.
"""

from __future__ import annotations

import enum

from h2.connection import H2Connection
from h2.exceptions import NoSuchStreamError

from serve.server.h2_stream import H2Stream


class Sent(enum.Enum):
    WAITING = 1  # window shut, or more body to come from the app
    WHOLE = 2  # the response is out, END_STREAM included
    GONE = 3  # h2 no longer knows the stream (reset meanwhile)


_WAITING, _WHOLE, _GONE = Sent.WAITING, Sent.WHOLE, Sent.GONE


class Outbound:
    __slots__ = ("_conn", "sending")

    def __init__(self, conn: H2Connection) -> None:
        self._conn = conn
        # Streams with queued bytes (or an end) not yet given to h2, in arrival order.
        self.sending: dict[int, H2Stream] = {}

    def add(self, stream: H2Stream) -> None:
        self.sending[stream.stream_id] = stream

    def discard(self, stream_id: int) -> None:
        self.sending.pop(stream_id, None)

    def clear(self) -> None:
        self.sending.clear()

    def send(self, stream: H2Stream, write_paused: bool) -> Sent:
        """Give h2 what `stream` queued, as far as its window allows."""
        conn, stream_id, out = self._conn, stream.stream_id, stream.out
        frame_size = conn.max_outbound_frame_size
        ended_with_data = False
        try:
            while out:
                window = min(conn.local_flow_control_window(stream_id), frame_size)
                if window <= 0:
                    stream.flow.pause()
                    return _WAITING
                chunk = out[0]
                if len(chunk) > window:
                    piece, out[0] = chunk[:window], chunk[window:]
                else:
                    piece = out.popleft()
                ended_with_data = not out and stream.ended and stream.trailers is None
                conn.send_data(stream_id, piece, end_stream=ended_with_data)
                stream.sent += len(piece)
            del self.sending[stream_id]
            if not stream.ended:
                if not write_paused:
                    stream.flow.resume()
                return _WAITING
            if stream.trailers is not None:
                conn.send_headers(stream_id, stream.trailers, end_stream=True)
            elif not ended_with_data:
                conn.send_data(stream_id, b"", end_stream=True)
            return _WHOLE
        except NoSuchStreamError:
            return _GONE
