"""The streams of one HTTP/2 connection whose response is not complete: how h2's request
events become streams and ASGI cycles, and the streams' common fate.

Rules: part of the session (server.h2_connection), which owns one StreamTable and hands it
h2's request events once the connection takes requests (not draining, not over
limit_concurrency). The table admits a request (its fields valid, its declared length within
max_body_size) or answers it with the status that says why. It neither feeds h2 nor writes
itself: what it or a stream must tell the client goes through the connection's writer
(server.h2_stream.StreamWriter), what a stream asks of the session through StreamSession.
`requests` and `idle_mark` are what the sweep (server.h2_ending) and server.capacity read of
the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Iterator
from typing import TYPE_CHECKING, Protocol

import h2.events as ev
from h2.errors import ErrorCodes

from serve.server import h2_scope
from serve.server.connection_info import ConnectionInfo
from serve.server.cycle import Cycle
from serve.server.errors import RequestRejected
from serve.server.events import RequestHead
from serve.server.h2_stream import H2Stream, StreamSession, StreamWriter
from serve.server.scope import http_scope

if TYPE_CHECKING:
    from serve.server.context import WorkerContext

logger = logging.getLogger("serve")


class TableWriter(StreamWriter, Protocol):
    @property
    def write_paused(self) -> bool: ...
    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None: ...


class StreamTable:
    __slots__ = ("_ctx", "_info", "_session", "_writer", "idle_mark", "open", "requests")

    def __init__(
        self,
        ctx: WorkerContext,
        info: ConnectionInfo,
        session: StreamSession,
        writer: TableWriter,
    ) -> None:
        self._ctx = ctx
        self._info = info
        self._session = session
        self._writer = writer
        self.open: dict[int, H2Stream] = {}
        # Streams started on this connection, and ctx.requests when the last one ended
        # (server.capacity's order of idle connections).
        self.requests = 0
        self.idle_mark = ctx.requests

    def __len__(self) -> int:
        return len(self.open)

    def __iter__(self) -> Iterator[H2Stream]:
        return iter(self.open.values())

    def admit(self, event: ev.RequestReceived) -> None:
        """A new request: started if valid, else answered with 400 or 413 without the app."""
        stream_id = event.stream_id
        has_body = event.stream_ended is None
        try:
            head = h2_scope.request_head(event.headers or (), has_body)
            limit = self._ctx.settings.limits.max_body_size
            declared = h2_scope.declared_length(head.headers)
            if limit is not None and declared is not None and declared > limit:
                raise RequestRejected(413, "request body too large")
        except RequestRejected as exc:
            logger.debug("bad HTTP/2 request from %s: %s", self._info.client, exc.reason)
            self._writer.send_head(stream_id, [(b":status", b"%d" % exc.status)], True)
            self._ctx.answered_without_head(self._info.client, exc.status, 0)
            if has_body:
                self._writer.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            return
        self.start(stream_id, head)

    def start(self, stream_id: int, head: RequestHead) -> None:
        """An admitted request: its stream, its cycle, and its app (or its shedding)."""
        ctx = self._ctx
        stream = H2Stream(self._session, self._writer, stream_id)
        scope = http_scope(ctx, self._info, head)
        extensions = scope.setdefault("extensions", {})
        extensions.update(h2_scope.TRAILERS_EXTENSION)
        cycle = Cycle(stream, stream, scope, head.has_body, head.expect_continue, True)
        cycle.start_time = time.perf_counter()
        stream.cycle = cycle
        if self._writer.write_paused:
            stream.flow.pause()
        self.open[stream_id] = stream
        self.requests += 1
        ctx.start_request(cycle, False)

    def body(self, event: ev.DataReceived) -> None:
        """Request body bytes: to the stream's cycle, within max_body_size."""
        stream_id = event.stream_id
        data = event.data or b""
        size = event.flow_controlled_length or 0
        stream = self.open.get(stream_id)
        if stream is None or not stream.receiving:
            self._writer.acknowledge(stream_id, size)
            return
        limit = self._ctx.settings.limits.max_body_size
        if limit is not None and stream.body_received + len(data) > limit:
            self._writer.acknowledge(stream_id, size)
            stream.too_large()
            return
        stream.receive(data, size)

    def ended(self, stream_id: int) -> None:
        stream = self.open.get(stream_id)
        if stream is not None and stream.receiving:
            stream.cycle.body.end()

    def remove(self, stream_id: int) -> None:
        if self.open.pop(stream_id, None) is not None and not self.open:
            self.idle_mark = self._ctx.requests

    def lose_all(self) -> None:
        """The connection is gone or stopping: every app hears http.disconnect."""
        for stream in self.open.values():
            stream.lost()

    def pause_all(self) -> None:
        for stream in self.open.values():
            stream.flow.pause()

    def resume_all(self, waiting: Container[int]) -> None:
        """Writes resumed: the apps of streams not `waiting` for window may send again."""
        for stream_id, stream in self.open.items():
            if stream_id not in waiting:
                stream.flow.resume()
