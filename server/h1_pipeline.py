"""The requests of one HTTP/1.1 connection, answered one at a time in the order they came.

Rules: the connection (server.h1_connection) parses and hands each request head here, which
gives it a cycle (server.cycle) and owns that cycle (its CycleOwner). The first request in
the pipeline is the one being answered; the ones parsed behind it wait, with reading paused,
until the responses before theirs are complete (RFC 9112 §9.3.2: responses go out in the
order of the requests). After each response this decides how the connection goes on: the
next request, the error found behind the answered ones, idle for keep-alive, or closed
(also once a client that half-closed has had every answer).
`state` is where the connection is in Go's net/http states: requests move it to ACTIVE and
back to IDLE here, the connection sets NEW when bytes arrive and CLOSED when it ends. What
this asks of the connection is a PipelineHost; the transport is never touched here.
Hot path: enum members are read through module aliases (an Enum class attribute goes
through EnumType.__getattr__ on 3.11), and a request costs one call in and one out.
"""

from __future__ import annotations

import enum
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

from serve.server.connection_info import ConnectionInfo
from serve.server.context import ServerAnswer, WorkerContext
from serve.server.cycle import Cycle, ResponseState
from serve.server.events import ParseFailed, RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_parser import H1Parser
from serve.server.h1_response import H1Response
from serve.server.h1_writer import error_body
from serve.server.request_body import BodyState
from serve.server.scope import http_scope


class ConnState(enum.Enum):
    NEW = 1  # accepted, or the first bytes of a request arrived
    ACTIVE = 2  # a request in progress
    IDLE = 3  # keep-alive, between requests
    CLOSED = 4


_NEW, _ACTIVE, _IDLE, _CLOSED = ConnState.NEW, ConnState.ACTIVE, ConnState.IDLE, ConnState.CLOSED
_RECEIVING, _DELIVERED = BodyState.RECEIVING, BodyState.DELIVERED
_NOT_STARTED, _STARTED = ResponseState.NOT_STARTED, ResponseState.STARTED


class PipelineHost(Protocol):
    """What the pipeline asks of its connection."""

    def close(self) -> None: ...
    def write_error_and_close(self, status: int) -> None: ...
    def parse_held(self) -> None: ...


class RequestPipeline:
    __slots__ = (
        "_ctx",
        "_host",
        "_info",
        "_parser",
        "_queue",
        "_response",
        "client_gone",
        "flow",
        "heads",
        "idle_mark",
        "pending_error",
        "receiving",
        "state",
    )

    def __init__(  # noqa: PLR0917  (positional: a call with keywords builds a dict on 3.11)
        self,
        host: PipelineHost,
        ctx: WorkerContext,
        parser: H1Parser,
        flow: FlowControl,
        response: H1Response,
        info: ConnectionInfo,
    ) -> None:
        # Weakly: the connection owns its pipeline, and a strong reference back would leave
        # every closed connection to the cyclic collector instead of freeing it at once. The
        # host is asked only while the connection is open: once it is lost, no cycle here
        # completes or fails.
        self._host: PipelineHost = weakref.proxy(host)
        self._ctx = ctx
        self._parser = parser
        # The writer of every response on this connection, head of the pipeline first.
        self._response = response
        self._info = info
        # Read by the cycles (CycleOwner): send() waits while writes are paused.
        self.flow = flow
        self._queue: deque[Cycle] = deque()
        self.state = _NEW
        # The error to answer once the requests before it are answered, then close.
        self.pending_error: ParseFailed | None = None
        # Set when the client half-closed (or closed): once what it sent is answered, the
        # connection closes, and an app waiting for more than its body calls this.
        self.client_gone: Callable[[], None] | None = None
        # The cycle of the last request head: where its body and its end go.
        self.receiving: Cycle
        # Request heads seen; with the state, what the deadline sweep compares between runs.
        self.heads = 0
        # Where the connection went idle in the worker's count of requests (server.capacity).
        self.idle_mark = ctx.requests

    def add(self, head: RequestHead) -> Cycle | None:
        """A request head arrived: its cycle, to start once the read is dispatched, if it
        heads the pipeline; None if it waits behind others."""
        self.state = _ACTIVE
        self.heads += 1
        ctx = self._ctx
        cycle = Cycle(
            self,
            self._response,
            http_scope(ctx, self._info, head),
            head.has_body,
            head.expect_continue,
            head.keep_alive and not ctx.draining,
        )
        # One clock read per request: the duration histogram and the access log share it.
        cycle.start_time = time.perf_counter()
        self.receiving = cycle
        queue = self._queue
        queue.append(cycle)
        if len(queue) == 1:
            return cycle
        # A pipelined request waits for the one before it; stop reading more meanwhile.
        self.flow.pause_reading()
        return None

    def answering(self) -> bool:
        """True while a request is being answered or waits for its turn."""
        return bool(self._queue)

    def fail(self, event: ParseFailed) -> None:
        """The parser refused what came after the last head: answer it after the requests
        before it, or now."""
        queue = self._queue
        if not queue:
            self.answer_without_head(event.status)
            return
        last = queue[-1]
        if last.body.state is _RECEIVING:
            # The failure is inside this request's body: it can never complete.
            if len(queue) == 1:
                last.disconnect()
                if last.response is _NOT_STARTED or last.response is _STARTED:
                    # Nothing of the app's response went out: the request's response is the
                    # server's, in the app's place (which hears the loss).
                    status, body = event.status, error_body(event.status)
                    last.answer = status
                    answer = ServerAnswer(last.scope, status, len(body), last.start_time)
                    self._ctx.finish_request(answer)
                    self._host.write_error_and_close(status)
                else:
                    self._host.close()
                return
            queue.pop()
        self.pending_error = event
        self.flow.pause_reading()

    def answer_without_head(self, status: int) -> None:
        """Answer `status` where no request head was read (a malformed or oversized head, a
        connection over a limit), counted and logged as such, and close."""
        self._ctx.answered_without_head(self._info.client, status, len(error_body(status)))
        self._host.write_error_and_close(status)

    def client_finished(self) -> None:
        """The client sends no more: what it sent whole is still answered, but an app waiting
        for more than its request body, now or later, ends the connection (server.cycle)."""
        self.client_gone = self._client_left
        for cycle in self._queue:
            body = cycle.body
            if body.state is _DELIVERED and body.waiter is not None:
                self._client_left()
                return

    def _client_left(self) -> None:
        # Taken as gone, as at a close: every request hears it and the transport closes.
        self.disconnect()
        self._host.close()

    def disconnect(self) -> None:
        """The connection is lost or dropped: every request in the pipeline hears it."""
        for cycle in self._queue:
            cycle.disconnect()

    # -- CycleOwner --------------------------------------------------------------------------
    def body_consumed(self) -> None:
        if len(self._queue) <= 1 and not self._parser.held:
            self.flow.resume_reading()

    def response_complete(self, cycle: Cycle) -> None:
        """The head-of-line response is complete: start the next request, or go idle."""
        ctx = self._ctx
        ctx.finish_request(cycle)
        if not self._response.keep_alive:
            self._host.close()
            return
        queue = self._queue
        queue.popleft()
        if queue:
            # Not eager: a chain of pipelined requests started eagerly from each other's
            # completion would nest one Python frame stack per request.
            ctx.start_request(queue[0], False)
            if len(queue) == 1:
                self._read_more()
        elif self.pending_error is not None:
            self.answer_without_head(self.pending_error.status)
        elif self.client_gone is not None and not self._parser.held:
            self._host.close()
        else:
            self.state = _IDLE
            self.idle_mark = ctx.requests
            if self.flow.read_paused:
                self._read_more()

    def response_cut(self, cycle: Cycle) -> None:
        self._ctx.finish_request(cycle)

    def response_failed(self, cycle: Cycle) -> None:
        if cycle.answer:
            cycle.bytes_sent = len(error_body(cycle.answer))
        self._ctx.finish_request(cycle)
        if cycle.answer:
            self._host.write_error_and_close(cycle.answer)
        else:
            self._host.close()

    def _read_more(self) -> None:
        """Parse what the parser holds of an earlier read first, then read the socket again."""
        if self._parser.held:
            # Soon, not now: this runs inside the app's send(), and parsing may start an app.
            self._ctx.loop.call_soon(self._host.parse_held)
        else:
            self.flow.resume_reading()
