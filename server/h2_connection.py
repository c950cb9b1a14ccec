"""asyncio glue for one HTTP/2 connection: bytes in -> h2 events -> one Cycle per stream.

Rules: the only code that feeds h2.connection.H2Connection and writes what it produces. h2
does the framing, HPACK, stream states and flow-control accounting; server.h2_scope turns
header lists into requests, server.h2_stream is each stream's CycleOwner, server.cycle the
ASGI cycle shared with HTTP/1.1. A connection arrives here already accepted, from the
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
import contextlib
import logging
import time
from typing import cast

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import NoSuchStreamError, ProtocolError
from h2.settings import SettingCodes, Settings

from serve.server import h2_scope
from serve.server.context import WorkerContext
from serve.server.cycle import Cycle
from serve.server.events import RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_validate import RequestRejected
from serve.server.h2_ending import H2Ending, Phase
from serve.server.h2_guard import ResetGuard
from serve.server.h2_stream import H2Stream
from serve.server.tls import tls_extension

logger = logging.getLogger("serve")

_DEFAULT_WINDOW = 65535
_LINGERING, _GOAWAY_SENT, _SERVING = Phase.LINGERING, Phase.GOAWAY_SENT, Phase.SERVING


class H2Session(asyncio.Protocol):
    def __init__(
        self,
        ctx: WorkerContext,
        transport: asyncio.Transport,
        flow: FlowControl,
        *,
        server: tuple[str, int] | None,
        client: tuple[str, int] | None,
        trusted: bool,
    ) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        # A write_out() is scheduled for this turn of the loop (write_soon).
        self.flush_due = False
        self.transport = transport
        self.flow = flow
        self.server, self.client, self.trusted = server, client, trusted
        ssl_object = transport.get_extra_info("ssl_object")
        self.scheme = "http" if ssl_object is None else "https"
        self.tls_info = None if ssl_object is None else tls_extension(ssl_object)
        settings = ctx.settings.http2
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            # server.h2_scope builds every response and trailer field list already checked,
            # lowercased and trimmed; h2's second pass cost a sixth of a small response.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = H2Connection(config)
        self.conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
            },
        )
        self.conn.decoder.max_header_list_size = settings.max_header_list_size
        self.guard = ResetGuard(settings.resets_per_second, self.loop.time())
        # Streams whose response is not complete on the wire; those of them waiting for window.
        self.streams: dict[int, H2Stream] = {}
        self.sending: dict[int, H2Stream] = {}
        self.write_paused = False
        self.closed = False
        self.requests = 0
        self.ending = H2Ending(self)
        # server.capacity's order of idle connections: ctx.requests when the last stream ended.
        self.idle_mark = ctx.requests
        # Accepted over limit_concurrency: the first request gets 503, then GOAWAY.
        self.over_limit = False
        self._date_block = b""
        self._date_fields: h2_scope.Fields = []

    # -- starting ------------------------------------------------------------------------------
    def begin(self, data: bytes) -> None:
        """A connection that speaks HTTP/2 from its first byte (ALPN h2, or the preface)."""
        self.conn.initiate_connection()
        self.open_connection_window()
        self.write_out()
        if data:
            self.data_received(data)

    def attach(self) -> None:
        self.transport.set_protocol(self)
        self.ctx.connections.add(self)

    def open_connection_window(self) -> None:
        increment = self.ctx.settings.http2.connection_window_size - _DEFAULT_WINDOW
        if increment > 0:
            self.conn.increment_flow_control_window(increment)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.ending.phase is _LINGERING:
            return
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            # h2 has queued the GOAWAY that names the error.
            logger.debug("HTTP/2 protocol error from %s: %s", self.client, exc)
            self.write_out()
            self.shut()
            return
        for event in events:
            if self.closed or self.ending.phase is _LINGERING:
                return
            kind = type(event)
            if kind is ev.DataReceived:
                self.body_received(cast(ev.DataReceived, event))
            elif kind is ev.RequestReceived:
                self.request_received(cast(ev.RequestReceived, event))
            elif kind is ev.StreamEnded:
                self.stream_ended(cast(ev.StreamEnded, event).stream_id)
            elif kind is ev.StreamReset:
                self.stream_reset(cast(ev.StreamReset, event).stream_id)
            elif kind is ev.WindowUpdated or kind is ev.RemoteSettingsChanged:
                self.pump_all()
            elif kind is ev.ConnectionTerminated:
                self.shut()
        self.write_out()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for stream in self.streams.values():
            stream.lost()
        self.streams.clear()
        self.sending.clear()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.ending.waiting = None
        # A peer that does not read gets no more of our replies (PING, SETTINGS acks) queued.
        self.flow.pause_reading()
        for stream in self.streams.values():
            stream.flow.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.ending.waiting = None
        self.flow.resume_reading()
        self.pump_all()
        for stream_id, stream in self.streams.items():
            if stream_id not in self.sending:
                stream.flow.resume()

    # -- requests ------------------------------------------------------------------------------
    def request_received(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.over_limit:
            self.ending.refuse_connection(stream_id)
            return
        if self.ending.phase is _GOAWAY_SENT:
            # Sent before the client read our GOAWAY: it may retry it on a new connection.
            self.refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        has_body = event.stream_ended is None
        try:
            head = h2_scope.request_head(event.headers or (), has_body)
            limit = self.ctx.settings.limits.max_body_size
            declared = h2_scope.declared_length(head.headers)
            if limit is not None and declared is not None and declared > limit:
                raise RequestRejected(413, "request body too large")
        except RequestRejected as exc:
            logger.debug("bad HTTP/2 request from %s: %s", self.client, exc.reason)
            self.conn.send_headers(stream_id, [(b":status", b"%d" % exc.status)], end_stream=True)
            if has_body:
                self.refuse(stream_id, ErrorCodes.NO_ERROR)
            return
        self.start_stream(stream_id, head)

    def start_stream(self, stream_id: int, head: RequestHead) -> None:
        ctx = self.ctx
        stream = H2Stream(self, stream_id)
        scope = h2_scope.build_scope(
            ctx, head, server=self.server, client=self.client, scheme=self.scheme,
            trusted=self.trusted, tls_info=self.tls_info,
        )  # fmt: skip
        cycle = Cycle(stream, scope, head.has_body, head.expect_continue, True)
        cycle.start_time = time.perf_counter()
        stream.cycle = cycle
        if self.write_paused:
            stream.flow.pause()
        self.streams[stream_id] = stream
        self.requests += 1
        if ctx.shedding:
            ctx.shed(cycle)
            return
        ctx.app_started(cycle, self.loop.create_task(cycle.run(ctx.app)))

    def body_received(self, event: ev.DataReceived) -> None:
        stream_id = event.stream_id
        data = event.data or b""
        size = event.flow_controlled_length or 0
        stream = self.streams.get(stream_id)
        if stream is None or not stream.receiving:
            self.acknowledge(stream_id, size)
            return
        limit = self.ctx.settings.limits.max_body_size
        if limit is not None and stream.body_received + len(data) > limit:
            self.acknowledge(stream_id, size)
            stream.too_large()
            return
        stream.receive(data, size)

    def stream_ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.receiving:
            stream.cycle.end_body()

    def stream_reset(self, stream_id: int) -> None:
        if not self.guard.allow(self.loop.time()):
            self.calm()
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.lost()
            self.forget(stream)

    def refuse(self, stream_id: int, code: ErrorCodes) -> None:
        if code is not ErrorCodes.NO_ERROR and not self.guard.allow(self.loop.time()):
            self.calm()
            return
        with contextlib.suppress(NoSuchStreamError):
            self.conn.reset_stream(stream_id, code)

    def calm(self) -> None:
        logger.warning("HTTP/2 client %s resets too many streams; closing", self.client)
        self.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self.write_out()
        self.shut()

    # -- what streams ask ----------------------------------------------------------------------
    def date_fields(self) -> h2_scope.Fields:
        block = self.ctx.date_block
        if block is not self._date_block:
            self._date_block, self._date_fields = block, h2_scope.date_fields(block)
        return list(self._date_fields)

    def write_out(self) -> None:
        self.flush_due = False
        data = self.conn.data_to_send()
        if data and not self.closed and self.ending.phase is not _LINGERING:
            self.transport.write(data)

    def write_soon(self) -> None:
        """What h2 has ready goes out when the loop next runs its callbacks, with what the
        other streams add meanwhile: the responses a turn of the loop completes on this
        connection leave in one write, not one each (h2load -m4: a quarter of the writes)."""
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self.write_out)

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.conn.acknowledge_received_data(size, stream_id)
            self.write_out()

    def pump(self, stream: H2Stream) -> None:
        """Send what `stream` has queued as far as the windows allow."""
        if self.closed:
            return
        self.sending[stream.stream_id] = stream
        if not self.write_paused:
            self.send_queued(stream)
        self.write_soon()

    def pump_all(self) -> None:
        if not self.write_paused and not self.closed:
            for stream in list(self.sending.values()):
                self.send_queued(stream)
            self.write_out()

    def send_queued(self, stream: H2Stream) -> None:
        conn, stream_id, out = self.conn, stream.stream_id, stream.out
        frame_size = conn.max_outbound_frame_size
        ended_with_data = False
        try:
            while out:
                window = min(conn.local_flow_control_window(stream_id), frame_size)
                if window <= 0:
                    stream.flow.pause()
                    return
                chunk = out[0]
                if len(chunk) > window:
                    piece, out[0] = chunk[:window], chunk[window:]
                else:
                    piece = out.popleft()
                ended_with_data = not out and stream.ended and stream.trailers is None
                conn.send_data(stream_id, piece, end_stream=ended_with_data)
                stream.sent += len(piece)
            del self.sending[stream_id]
            if stream.ended:
                if stream.trailers is not None:
                    conn.send_headers(stream_id, stream.trailers, end_stream=True)
                elif not ended_with_data:
                    conn.send_data(stream_id, b"", end_stream=True)
                self.stream_sent(stream)
            elif not self.write_paused:
                stream.flow.resume()
        except NoSuchStreamError:
            stream.lost()
            self.forget(stream)

    def stream_sent(self, stream: H2Stream) -> None:
        """The response went out whole (END_STREAM)."""
        if stream.receiving:
            # RFC 9113 section 8.1: a complete response may stop the rest of the request.
            self.refuse(stream.stream_id, ErrorCodes.NO_ERROR)
            stream.lost()
        self.forget(stream)

    def reset(self, stream: H2Stream, code: ErrorCodes) -> None:
        if not self.closed:
            self.refuse(stream.stream_id, code)
        stream.lost()
        self.forget(stream)
        self.write_out()

    def forget(self, stream: H2Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        self.sending.pop(stream.stream_id, None)
        if not self.streams:
            self.idle_mark = self.ctx.requests
        if not self.streams and self.ending.phase is not _SERVING:
            self.ending.idle()

    # -- closing, deadlines, drain -------------------------------------------------------------
    def shut(self) -> None:
        """Stop every stream now and close once what is written is flushed."""
        self.write_out()
        self.closed = True
        for stream in self.streams.values():
            stream.lost()
        if not self.transport.is_closing():
            self.transport.close()

    def check_deadline(self, now: float) -> None:
        self.ending.sweep(now)

    def reuse_mark(self) -> int | None:
        """server.capacity: no stream open and still serving."""
        if self.streams or self.closed or self.ending.phase is not Phase.SERVING:
            return None
        return self.idle_mark

    def close_idle(self) -> None:
        self.conn.close_connection(ErrorCodes.NO_ERROR)
        self.write_out()
        self.shut()

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection and whatever it was doing."""
        self.closed = True
        for stream in self.streams.values():
            stream.lost()
        self.transport.abort()
