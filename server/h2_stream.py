"""One HTTP/2 stream as the owner of an ASGI cycle (server.cycle.CycleOwner).

Rules: the stream turns what the cycle asks into h2 calls on its session's connection and
never writes to the transport itself: the session (server.h2_connection) sends DATA as the
flow-control windows allow. Backpressure both ways:
- out: body bytes the windows do not let out yet wait in `out`; meanwhile the stream's flow
  is paused and the app's send() waits in drain(), so a stream holds at most one app message.
- in: request body bytes reach the cycle at once but are acknowledged to h2 (which grants
  the client more window) only when the app has taken them (body_consumed), so a slow app
  holds the client to initial_window_size bytes ahead of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from server import h2_scope
from server.cycle import BodyState, Cycle, ResponseState
from server.h1_writer import RETRY_AFTER_S, InvalidResponse, reason
from server.stats import STATS

if TYPE_CHECKING:
    from server.h2_connection import H2Session

logger = logging.getLogger("serve")

_NO_BODY_STATUSES = frozenset((204, 304))


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
    )

    def __init__(self, session: H2Session, stream_id: int) -> None:
        self.session = session
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
        # Bytes sent in DATA frames; with `stalled`, what the deadline sweep compares.
        self.sent = 0
        self.stalled: tuple[int, float] | None = None
        # Request body: received in all (for max_body_size), and not yet acknowledged to h2.
        self.body_received = 0
        self.unacked = 0

    # -- fed by the session ------------------------------------------------------------------
    def receive(self, data: bytes, flow_controlled: int) -> None:
        self.body_received += len(data)
        self.unacked += flow_controlled
        if data:
            self.cycle.feed_body(data)
        else:
            # Padding only: nothing for the app to consume, so nothing to wait for.
            self.body_consumed()

    def too_large(self) -> None:
        """The body went over max_body_size: 413 if the app has not answered yet."""
        cycle = self.cycle
        if cycle.response is ResponseState.NOT_STARTED or cycle.response is ResponseState.STARTED:
            self.session.conn.send_headers(self.stream_id, [(b":status", b"413")], end_stream=True)
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
        session = self.session
        fields, declared = h2_scope.response_fields(status, headers, session.date_fields())
        self.no_body = cycle.head_request or status in _NO_BODY_STATUSES
        if declared is None and not more:
            if not self.no_body or body:
                fields.append((b"content-length", b"%d" % len(body)))
        elif declared is not None and not self.no_body:
            if len(body) > declared:
                raise InvalidResponse("response body longer than its Content-Length")
            self.remaining = declared
        end = self.no_body or (not more and not body)
        session.conn.send_headers(self.stream_id, fields, end_stream=end)
        if end:
            self.ended = True
            session.stream_sent(self)
        else:
            self.send_body(cycle, body, more)

    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
        if self.ended or self.no_body:
            return
        if self.remaining is not None:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise RuntimeError("response body longer than its Content-Length")
            if not more and self.remaining > 0:
                logger.error("response ended %d bytes short of its Content-Length", self.remaining)
                self.session.reset(self, ErrorCodes.INTERNAL_ERROR)
                return
        if body:
            self.out.append(memoryview(body))
            cycle.bytes_sent += len(body)
        self.ended = not more
        self.session.pump(self)

    def send_trailers(
        self, cycle: Cycle, headers: Iterable[tuple[bytes, bytes]], more: bool
    ) -> None:
        if self.ended:
            return  # a response without a body (HEAD, 204, 304) ended with its head
        fields = h2_scope.trailer_fields(headers)
        self.trailers = fields if self.trailers is None else self.trailers + fields
        if not more:
            self.ended = True
            self.session.pump(self)

    def send_continue(self) -> None:
        self.session.conn.send_headers(self.stream_id, [(b":status", b"100")])
        self.session.write_out()

    def body_consumed(self) -> None:
        if self.unacked:
            acked, self.unacked = self.unacked, 0
            self.session.acknowledge(self.stream_id, acked)

    def response_complete(self, cycle: Cycle) -> None:
        self.record(cycle)

    def response_failed(self, cycle: Cycle) -> None:
        self.record(cycle)
        session = self.session
        if session.closed or self.stream_id not in session.streams:
            return
        if cycle.answer:
            self.out.clear()
            body = reason(cycle.answer)
            fields, _ = h2_scope.response_fields(cycle.answer, (), session.date_fields())
            fields.append((b"content-length", b"%d" % len(body)))
            if cycle.answer == 503:
                fields.append((b"retry-after", b"%d" % RETRY_AFTER_S))
            session.conn.send_headers(self.stream_id, fields)
            self.out.append(memoryview(body))
            self.ended = True
            session.pump(self)
        else:
            session.reset(self, ErrorCodes.INTERNAL_ERROR)

    def app_finished(self, cycle: Cycle) -> None:
        self.session.ctx.app_finished(cycle)

    def record(self, cycle: Cycle) -> None:
        ctx = self.session.ctx
        ctx.requests += 1
        duration_s = time.perf_counter() - cycle.start_time
        STATS.record(cycle.status, duration_s)
        if ctx.access_logger is not None:
            ctx.access_logger.log_scope(cycle.scope, cycle.status, cycle.bytes_sent, duration_s)

    @property
    def receiving(self) -> bool:
        return self.cycle.body_state is BodyState.RECEIVING
