"""One HTTP/2 stream as the owner and the writer of an ASGI cycle (server.cycle).

Rules: the stream turns what the cycle asks into requests to the connection's writer and to
its session, through the narrow StreamWriter and StreamSession it is handed, and neither
feeds h2 nor writes itself: the writer (server.h2_writer) does both, and sends DATA as the
flow-control windows allow; the session (server.h2_connection) keeps the streams.
Backpressure both ways:
- out: body bytes the windows do not let out yet wait in `out`; meanwhile the stream's flow
  is paused and the app's send() waits in drain(), so a stream holds at most one app message.
- in: request body bytes reach the cycle at once but are acknowledged to h2 (which grants
  the client more window) only when the app has taken them (body_consumed), so a slow app
  holds the client to initial_window_size bytes ahead of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from h2.errors import ErrorCodes

from serve.server import h2_scope
from serve.server import http_fields as hf
from serve.server.context import ServerAnswer
from serve.server.cycle import Cycle, ResponseState
from serve.server.deadline import Wait
from serve.server.request_body import BodyState

if TYPE_CHECKING:
    from serve.server.context import WorkerContext

logger = logging.getLogger("serve")


class StreamSession(Protocol):
    """What a stream asks of its session (server.h2_connection.H2Session), which keeps the
    connection's streams."""

    @property
    def ctx(self) -> WorkerContext: ...
    def carries(self, stream: H2Stream) -> bool: ...
    def date_fields(self) -> h2_scope.Fields: ...
    def stream_sent(self, stream: H2Stream) -> None: ...
    def reset(self, stream: H2Stream, code: ErrorCodes) -> None: ...


class StreamWriter(Protocol):
    """What a stream asks of its connection's writer (server.h2_writer.H2Writer), which alone
    feeds h2 and writes what h2 produces."""

    def send_head(self, stream_id: int, fields: h2_scope.Fields, end_stream: bool) -> None: ...
    def write_out(self) -> None: ...
    def write_soon(self) -> None: ...
    def acknowledge(self, stream_id: int, size: int) -> None: ...
    def pump(self, stream: H2Stream) -> None: ...


class StreamFlow:
    """The write side of one stream's flow control, as a cycle waits on it."""

    __slots__ = ("_waiter", "write_paused")

    def __init__(self) -> None:
        self.write_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.write_paused = True

    def resume(self) -> None:
        self.write_paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        while self.write_paused:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class H2Stream:
    __slots__ = (
        "body_received",
        "cycle",
        "ended",
        "flow",
        "no_body",
        "out",
        "remaining",
        "sent",
        "session",
        "stalled",
        "stream_id",
        "trailers",
        "unacked",
        "writer",
    )
    # A stream's client half-closes with END_STREAM, which ends only its body; a closed
    # connection ends every stream through lost().
    client_gone = None

    def __init__(self, session: StreamSession, writer: StreamWriter, stream_id: int) -> None:
        self.session = session
        self.writer = writer
        self.stream_id = stream_id
        self.cycle: Cycle
        self.flow = StreamFlow()
        # Response body bytes waiting for window, and what ends the stream once they are out:
        # `ended` (END_STREAM with the last DATA) or `trailers` (a last HEADERS block).
        self.out: deque[memoryview] = deque()
        self.ended = False
        self.trailers: h2_scope.Fields | None = None
        self.no_body = False
        self.remaining: int | None = None
        # Bytes sent in DATA frames: the mark of the sweep's `stalled` wait (server.deadline),
        # created the first time the stream waits for window at a sweep.
        self.sent = 0
        self.stalled: Wait | None = None
        # Request body: received in all (for max_body_size), and not yet acknowledged to h2.
        self.body_received = 0
        self.unacked = 0

    # -- fed by the session ------------------------------------------------------------------
    def receive(self, data: bytes, flow_controlled: int) -> None:
        self.body_received += len(data)
        self.unacked += flow_controlled
        if data:
            self.cycle.body.feed(data)
        else:
            # Padding only: nothing for the app to consume, so nothing to wait for.
            self.body_consumed()

    def too_large(self) -> None:
        """The body went over max_body_size: 413 if the app has not answered yet."""
        cycle = self.cycle
        if cycle.response is ResponseState.NOT_STARTED or cycle.response is ResponseState.STARTED:
            self.writer.send_head(self.stream_id, [(b":status", b"413")], True)
            # The request's response, in the app's place: accounted as such, not as cut.
            cycle.answer = 413
            self.session.ctx.finish_request(ServerAnswer(cycle.scope, 413, 0, cycle.start_time))
        self.session.reset(self, ErrorCodes.CANCEL)

    def lost(self) -> None:
        """The stream was reset or the connection is gone: the app hears http.disconnect."""
        self.out.clear()
        self.cycle.disconnect()
        self.flow.resume()

    # -- CycleOwner --------------------------------------------------------------------------
    def start_response(
        self,
        cycle: Cycle,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        more: bool,
    ) -> None:
        writer = self.writer
        fields, declared = h2_scope.response_fields(status, headers, self.session.date_fields())
        self.no_body = cycle.head_request or status in hf.NO_BODY_STATUSES
        if declared is None and not more:
            if not self.no_body or body:
                fields.append((b"content-length", b"%d" % len(body)))
        elif declared is not None and not self.no_body:
            hf.first_part(declared, len(body))
            self.remaining = declared
        end = self.no_body or (not more and not body)
        writer.send_head(self.stream_id, fields, end)
        if end:
            self.ended = True
            self.session.stream_sent(self)
            # Nothing else may write soon: a client waiting for this response sends nothing.
            writer.write_soon()
        else:
            self.send_body(cycle, body, more)

    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
        if self.ended or self.no_body:
            return
        if self.remaining is not None:
            self.remaining = hf.next_part(self.remaining, len(body))
            if not more and not hf.ended_whole(self.remaining):
                self.session.reset(self, ErrorCodes.INTERNAL_ERROR)
                return
        if body:
            self.out.append(memoryview(body))
            cycle.bytes_sent += len(body)
        self.ended = not more
        self.writer.pump(self)

    def send_trailers(
        self, cycle: Cycle, headers: Iterable[tuple[bytes, bytes]], more: bool
    ) -> None:
        if self.ended:
            return  # a response without a body (HEAD, 204, 304) ended with its head
        fields = h2_scope.trailer_fields(headers)
        self.trailers = fields if self.trailers is None else self.trailers + fields
        if not more:
            self.ended = True
            self.writer.pump(self)

    def send_continue(self) -> None:
        self.writer.send_head(self.stream_id, [(b":status", b"100")], False)
        self.writer.write_out()

    def body_consumed(self) -> None:
        if self.unacked:
            acked, self.unacked = self.unacked, 0
            self.writer.acknowledge(self.stream_id, acked)

    def response_complete(self, cycle: Cycle) -> None:
        self.session.ctx.finish_request(cycle)

    def response_cut(self, cycle: Cycle) -> None:
        self.session.ctx.finish_request(cycle)

    def response_failed(self, cycle: Cycle) -> None:
        session = self.session
        carried = session.carries(self)
        if carried and cycle.answer:
            # What the client gets of this response: the error body written below.
            cycle.bytes_sent = len(hf.reason(cycle.answer))
        session.ctx.finish_request(cycle)
        if not carried:
            return
        if cycle.answer:
            self.out.clear()
            body = hf.reason(cycle.answer)
            fields, _ = h2_scope.response_fields(cycle.answer, (), session.date_fields())
            fields.append((b"content-length", b"%d" % len(body)))
            if cycle.answer == 503:
                fields.append((b"retry-after", b"%d" % hf.RETRY_AFTER_S))
            self.writer.send_head(self.stream_id, fields, False)
            self.out.append(memoryview(body))
            self.ended = True
            self.writer.pump(self)
        else:
            session.reset(self, ErrorCodes.INTERNAL_ERROR)

    @property
    def receiving(self) -> bool:
        return self.cycle.body.state is BodyState.RECEIVING
