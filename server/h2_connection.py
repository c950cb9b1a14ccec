"""asyncio glue for one HTTP/2 connection: bytes in -> h2 events -> one Cycle per stream.

Rules: the only code that reads into h2.connection.H2Connection (receive_data); its writer
(server.h2_writer) is the only code that feeds h2 and writes what it produces, and the
session hands it to its children (streams, the stream table, the ending), which ask the
session itself through the narrow interfaces they declare. h2 does the framing, HPACK,
stream states and flow-control accounting;
server.h2_scope turns header lists into requests, server.h2_streams turns requests into
streams, server.h2_stream is each stream's CycleOwner, server.cycle the ASGI cycle shared
with HTTP/1.1. A connection arrives here already accepted, from the
dispatch in server.h2_dispatch (ALPN "h2", or the cleartext preface) or from an HTTP/1.1
`Upgrade: h2c` request, through server.h2_handover, and replaces the transport's protocol.
- Limits: SETTINGS advertise max_concurrent_streams and max_header_list_size, and h2
  enforces both (a client over either gets GOAWAY); h2 caps a header block at 64
  CONTINUATION frames of at most 16 KiB (our SETTINGS_MAX_FRAME_SIZE stays the default), so
  a CONTINUATION flood ends in GOAWAY too. Resets the client causes (RST_STREAM, refused
  streams) are rate limited by server.h2_guard: over the rate, GOAWAY ENHANCE_YOUR_CALM.
- Deadlines come from the worker's once-a-second sweep, as for HTTP/1.1: header_timeout
  until the first request, keep_alive_timeout while no stream is open, send_timeout while
  the transport stays paused (the connection is aborted) or a stream's window stays shut
  (that stream is reset).
- Graceful drain and the deadlines are server.h2_ending's: one GOAWAY naming the last stream
  accepted, sent when no stream is open (or at the drain's second sweep). h2 stops at a
  client's GOAWAY, so that ends every stream at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from serve.server import h2_scope
from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.flow import FlowControl
from serve.server.h2_ending import H2Ending, Phase
from serve.server.h2_guard import ResetGuard
from serve.server.h2_hpack import MemoDecoder, MemoEncoder
from serve.server.h2_settings import H2Settings
from serve.server.h2_stream import H2Stream
from serve.server.h2_streams import StreamTable
from serve.server.h2_writer import H2Writer

logger = logging.getLogger("serve")

_DEFAULT_WINDOW = 65535
_LINGERING, _GOAWAY_SENT, _SERVING = Phase.LINGERING, Phase.GOAWAY_SENT, Phase.SERVING


def server_connection(settings: H2Settings) -> H2Connection:
    """h2's state machine for one connection, advertising our limits in its SETTINGS."""
    config = H2Configuration(
        client_side=False,
        header_encoding=None,
        # server.h2_scope makes h2's inbound checks itself, in the pass that reads the fields.
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        # server.h2_scope builds every response and trailer field list already checked,
        # lowercased and trimmed; h2's second pass cost a sixth of a small response.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = H2Connection(config)
    conn.encoder = MemoEncoder()
    conn.decoder = MemoDecoder()
    conn.local_settings = Settings(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
        },
    )
    conn.decoder.max_header_list_size = settings.max_header_list_size
    return conn


class H2Session(asyncio.Protocol):
    def __init__(
        self,
        ctx: WorkerContext,
        transport: asyncio.Transport,
        flow: FlowControl,
        info: ConnectionInfo,
    ) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport = transport
        self.flow = flow
        self.info = info
        settings = ctx.settings.http2
        self.conn = server_connection(settings)
        self.writer = H2Writer(self.conn, transport, self)
        self.guard = ResetGuard(settings.resets_per_second, self.loop.time())
        # Streams whose response is not complete on the wire.
        self.streams = StreamTable(ctx, info, self, self.writer)
        self.ending = H2Ending(self)
        # Accepted over limit_concurrency: the first request gets 503, then GOAWAY.
        self.over_limit = False
        self._date_block = b""
        self._date_fields: h2_scope.Fields = []

    # -- starting ------------------------------------------------------------------------------
    def begin(self, data: bytes) -> None:
        """A connection that speaks HTTP/2 from its first byte (ALPN h2, or the preface)."""
        self.conn.initiate_connection()
        self.open_connection_window()
        self.writer.write_out()
        if data:
            self.data_received(data)

    def attach(self) -> None:
        self.transport.set_protocol(self)
        self.ctx.connection_opened(self)

    def open_connection_window(self) -> None:
        increment = self.ctx.settings.http2.connection_window_size - _DEFAULT_WINDOW
        if increment > 0:
            self.conn.increment_flow_control_window(increment)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.ending.phase is _LINGERING:
            return
        try:
            self.handle(self.conn.receive_data(data))
        except (ProtocolError, h2_scope.Malformed) as exc:
            # h2 has queued the GOAWAY that names its errors; a malformed request (RFC 9113
            # section 8.1.1) is made a connection error (section 5.4.1) as h2 makes it.
            if isinstance(exc, h2_scope.Malformed):
                self.conn.close_connection(ErrorCodes.PROTOCOL_ERROR)
            logger.debug("HTTP/2 protocol error from %s: %s", self.info.client, exc)
            self.writer.write_out()
            self.shut()

    def handle(self, events: list[ev.Event]) -> None:
        for event in events:
            if self.writer.closed or self.ending.phase is _LINGERING:
                return
            kind = type(event)
            if kind is ev.DataReceived:
                self.streams.body(cast(ev.DataReceived, event))
            elif kind is ev.RequestReceived:
                self.request_received(cast(ev.RequestReceived, event))
            elif kind is ev.StreamEnded:
                self.streams.ended(cast(ev.StreamEnded, event).stream_id)
            elif kind is ev.StreamReset:
                self.stream_reset(cast(ev.StreamReset, event).stream_id)
            elif kind is ev.WindowUpdated or kind is ev.RemoteSettingsChanged:
                self.writer.pump_all()
            elif kind is ev.TrailersReceived:
                h2_scope.check_trailers(cast(ev.TrailersReceived, event).headers or ())
            elif kind is ev.ConnectionTerminated:
                self.shut()
        self.writer.write_out()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writer.closed = True
        self.streams.lose_all()
        self.streams.open.clear()
        self.writer.outbound.clear()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.writer.write_paused = True
        self.ending.wait.restart()
        # A peer that does not read gets no more of our replies (PING, SETTINGS acks) queued.
        self.flow.pause_reading()
        self.streams.pause_all()

    def resume_writing(self) -> None:
        self.writer.write_paused = False
        self.ending.wait.restart()
        self.flow.resume_reading()
        self.writer.pump_all()
        self.streams.resume_all(self.writer.outbound.sending)

    # -- requests ------------------------------------------------------------------------------
    def request_received(self, event: ev.RequestReceived) -> None:
        if self.over_limit:
            self.ending.refuse_connection(event.stream_id)
        elif self.ending.phase is _GOAWAY_SENT:
            # Sent before the client read our GOAWAY: it may retry it on a new connection.
            self.refuse(event.stream_id, ErrorCodes.REFUSED_STREAM)
        else:
            self.streams.admit(event)

    def stream_reset(self, stream_id: int) -> None:
        if not self.guard.allow(self.loop.time()):
            self.calm()
            return
        stream = self.streams.open.get(stream_id)
        if stream is not None:
            self.stream_gone(stream)

    def refuse(self, stream_id: int, code: ErrorCodes) -> None:
        if code is not ErrorCodes.NO_ERROR and not self.guard.allow(self.loop.time()):
            self.calm()
            return
        self.writer.reset_stream(stream_id, code)

    def calm(self) -> None:
        logger.warning("HTTP/2 client %s resets too many streams; closing", self.info.client)
        self.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self.writer.write_out()
        self.shut()

    # -- what the streams, the writer and the ending ask (StreamSession, WriterEvents,
    # EndingSession)
    def carries(self, stream: H2Stream) -> bool:
        return not self.writer.closed and stream.stream_id in self.streams.open

    @property
    def last_stream_id(self) -> int:
        return int(self.conn.highest_inbound_stream_id)

    def date_fields(self) -> h2_scope.Fields:
        block = self.ctx.date_block
        if block is not self._date_block:
            self._date_block, self._date_fields = block, h2_scope.date_fields(block)
        return list(self._date_fields)

    def stream_sent(self, stream: H2Stream) -> None:
        """The response went out whole (END_STREAM)."""
        if stream.receiving:
            # RFC 9113 section 8.1: a complete response may stop the rest of the request.
            self.refuse(stream.stream_id, ErrorCodes.NO_ERROR)
            stream.lost()
        self.forget(stream)

    def stream_gone(self, stream: H2Stream) -> None:
        """Reset by the client, or h2 no longer knows it: the app hears http.disconnect."""
        stream.lost()
        self.forget(stream)

    def reset(self, stream: H2Stream, code: ErrorCodes) -> None:
        if not self.writer.closed:
            self.refuse(stream.stream_id, code)
        self.stream_gone(stream)
        self.writer.write_out()

    def forget(self, stream: H2Stream) -> None:
        self.streams.remove(stream.stream_id)
        self.writer.outbound.discard(stream.stream_id)
        if not self.streams and self.ending.phase is not _SERVING:
            self.ending.idle()

    # -- closing, deadlines, drain -------------------------------------------------------------
    def shut(self) -> None:
        """Stop every stream now and close once what is written is flushed."""
        self.writer.write_out()
        self.writer.closed = True
        self.streams.lose_all()
        if not self.transport.is_closing():
            self.transport.close()

    def check_deadline(self, now: float) -> None:
        self.ending.sweep(now)

    def reuse_mark(self) -> int | None:
        """server.capacity: no stream open and still serving."""
        if self.streams or self.writer.closed or self.ending.phase is not Phase.SERVING:
            return None
        return self.streams.idle_mark

    def close_idle(self) -> None:
        self.conn.close_connection(ErrorCodes.NO_ERROR)
        self.writer.write_out()
        self.shut()

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection and whatever it was doing."""
        self.writer.closed = True
        self.streams.lose_all()
        self.transport.abort()
