"""How one HTTP/2 connection ends: the graceful drain's GOAWAY, and the deadlines the worker's
once-a-second sweep enforces (header_timeout, keep_alive_timeout, send_timeout).

Rules: this module decides when the connection closes and what its last frame is; the
session (server.h2_connection) carries the streams, and its writer (server.h2_writer) writes
what the ending says. The drain goes through `Phase`:
- SERVING: no drain.
- DRAINING: the worker drains but streams were open at its first sweep; no GOAWAY yet, and
  a stream the client opens meanwhile is served.
- GOAWAY_SENT: a GOAWAY went out while streams were open (the drain's second sweep): they
  finish, later ones are refused with REFUSED_STREAM, and the connection closes after them.
- LINGERING: a GOAWAY went out as the last frame, with no stream open. Nothing more is
  written and what the client sends is dropped unread (a stream it opened meanwhile is above
  the GOAWAY's last stream id: not processed, safe to retry, RFC 9113 section 6.8); the
  connection closes when the client closes it or at the next sweep.
A connection accepted over limit_concurrency answers its first request with 503 and ends
with a GOAWAY naming that stream, LINGERING: the HTTP/2 form of HTTP/1.1's 503 and close, a
status every client reports, while the streams it opened beside it are retried elsewhere.
Why a GOAWAY waits for a moment with no stream open: the h2 library, and httpx on it, stops
reading at a GOAWAY (its connection state machine closes), so a response still on its way
after one is lost to such a client, while a stream above the last stream id is retried. A
sequential client leaves such a moment after every response. A client that always keeps a
stream open gets the GOAWAY at the next sweep, as RFC 9113 describes; clients that read on
after a GOAWAY (browsers, curl, nghttp2, Go) finish their open streams then.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

from h2.errors import ErrorCodes

from serve.server import h2_scope
from serve.server.connection_info import ConnectionInfo
from serve.server.deadline import Wait
from serve.server.h2_stream import H2Stream
from serve.server.h2_streams import StreamTable
from serve.server.h2_writer import H2Writer

if TYPE_CHECKING:
    from serve.server.context import WorkerContext

_BUSY_BODY = b"Service Unavailable"
_BUSY_HEAD = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_BUSY_BODY)),
)


class Phase(enum.Enum):
    SERVING = 1
    DRAINING = 2
    GOAWAY_SENT = 3
    LINGERING = 4


class EndingSession(Protocol):
    """What the ending asks of its session (server.h2_connection.H2Session), whose writer
    alone feeds h2 and writes what h2 produces."""

    @property
    def ctx(self) -> WorkerContext: ...
    @property
    def info(self) -> ConnectionInfo: ...
    # Streams whose response is not complete; the writer's outbound holds those waiting for
    # window.
    @property
    def streams(self) -> StreamTable: ...
    @property
    def writer(self) -> H2Writer: ...
    @property
    def last_stream_id(self) -> int: ...
    def date_fields(self) -> h2_scope.Fields: ...
    def reset(self, stream: H2Stream, code: ErrorCodes) -> None: ...
    def close_idle(self) -> None: ...
    def shut(self) -> None: ...
    def abort(self) -> None: ...


class H2Ending:
    __slots__ = ("phase", "session", "wait")

    def __init__(self, session: EndingSession) -> None:
        self.session = session
        self.phase = Phase.SERVING
        # Marked by (requests seen, write paused).
        self.wait = Wait()

    def goaway(self, last_stream_id: int) -> None:
        """GOAWAY NO_ERROR naming the last stream processed, as the connection's last frame
        when no stream is open."""
        session = self.session
        final = not session.streams
        session.writer.write_goaway(last_stream_id, final)
        self.phase = Phase.LINGERING if final else Phase.GOAWAY_SENT

    def refuse_connection(self, stream_id: int) -> None:
        """503 on the first stream of a connection over limit_concurrency, then GOAWAY."""
        session = self.session
        fields, _ = h2_scope.response_fields(503, _BUSY_HEAD, session.date_fields())
        session.writer.answer(stream_id, fields, _BUSY_BODY)
        # As HTTP/1.1's 503 at accept: a refused connection, not a request of the app's.
        session.ctx.answered_without_head(session.info.client, 503, len(_BUSY_BODY))
        self.goaway(stream_id)

    def idle(self) -> None:
        """The last open stream is done while the connection ends."""
        if self.phase is Phase.DRAINING:
            self.goaway(self.session.last_stream_id)
        elif self.phase is Phase.GOAWAY_SENT:
            self.session.writer.write_out()
            self.session.shut()

    def sweep(self, now: float) -> None:
        """Called by the worker's sweep: drain, send, header and keep-alive timeouts."""
        session = self.session
        if session.writer.closed:
            return
        phase = self.phase
        if phase is Phase.LINGERING:
            session.shut()
            return
        # A connection accepted just before the drain has its first request served, as
        # HTTP/1.1 serves one (with Connection: close); header_timeout still applies to it.
        if session.ctx.draining and phase is not Phase.GOAWAY_SENT and session.streams.requests:
            if phase is Phase.SERVING and session.streams:
                self.phase = Phase.DRAINING
            else:
                self.goaway(session.last_stream_id)
                if self.phase is Phase.LINGERING:
                    return
        self.timeouts(now)

    def timeouts(self, now: float) -> None:
        session = self.session
        settings = session.ctx.settings
        paused = session.writer.write_paused
        for stream in list(session.writer.outbound.sending.values()):
            if stream.stalled is None:
                stream.stalled = Wait()
            stalled = stream.stalled.waited(stream.sent, now)
            if stalled is not None and stalled >= settings.send_timeout_s and not paused:
                session.reset(stream, ErrorCodes.CANCEL)
        if session.streams and not paused:
            self.wait.restart()
            return
        waited = self.wait.waited((session.streams.requests, paused), now)
        if waited is None:
            return
        if paused:
            if waited >= settings.send_timeout_s:
                session.abort()
            return
        idle_timeout = (
            settings.keep_alive_timeout_s if session.streams.requests else settings.header_timeout_s
        )
        if waited >= idle_timeout:
            session.close_idle()
