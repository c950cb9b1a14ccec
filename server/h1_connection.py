"""asyncio glue for one HTTP/1.1 connection: bytes in -> parser -> cycles -> bytes out.

Rules: the request half and the connection's life are here, the response half in
server.h1_response (an H1Response the connection owns); where the transport goes after an
Upgrade head is server.h1_upgrade's. Framing decisions come from server.h1_parser (requests)
and server.h1_response (responses); ASGI rules live in server.cycle. Connection states
follow Go's net/http: NEW (accepted, or the first bytes of a request arrived), ACTIVE (a
request in progress), IDLE (keep-alive, between requests), CLOSED. Waiting in NEW ends after
header_timeout (slowloris), in IDLE after keep_alive_timeout (header_timeout if part of a
next head is buffered); the app's deadline is request_timeout's (server.deadline), and a
connection whose writes stay paused (a peer that does not read), or whose close waits on
such a peer, is aborted after send_timeout: a close would wait for a flush that never comes.
Time is kept by the worker's once-a-second sweep, not per request: the sweep notes when it
first finds a connection waiting, and closes it once the wait is over its timeout. Hot path:
enum members are read through module aliases (an Enum class attribute goes through
EnumType.__getattr__ on 3.11) and calls are kept off the per-request path.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
from collections import deque
from typing import cast

from serve.server import h1_writer as w
from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.cycle import BodyState, Cycle, ResponseState
from serve.server.deadline import Wait
from serve.server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_parser import H1Parser
from serve.server.h1_response import JOIN_LIMIT, H1Response
from serve.server.h1_upgrade import hand_over
from serve.server.scope import http_scope
from serve.server.write_batch import WriteBatch

logger = logging.getLogger("serve")

# Request heads parsed from one read; the rest of the read waits, unparsed, until the
# pipeline is answered down to its last request: a client that pipelines and never reads
# costs one read buffer, not a request cycle for each of the thousands of requests in it.
PIPELINE_MAX = 32
# 3.12+: the app runs at once inside data_received and a Task exists only if it suspends.
# On 3.11 an eager start is not available (apps need current_task() to be their Task).
EAGER_TASKS = sys.version_info >= (3, 12)


class ConnState(enum.Enum):
    NEW = 1
    ACTIVE = 2
    IDLE = 3
    CLOSED = 4


_NEW, _ACTIVE, _IDLE, _CLOSED = ConnState.NEW, ConnState.ACTIVE, ConnState.IDLE, ConnState.CLOSED
_RECEIVING = BodyState.RECEIVING
_NOT_STARTED = ResponseState.NOT_STARTED


class H1Connection(asyncio.Protocol):
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.parser = H1Parser(ctx.settings.limits, ctx.upgrades, PIPELINE_MAX)
        self.state = _NEW
        self.pipeline: deque[Cycle] = deque()
        self.pending_error: ParseFailed | None = None
        # The cycle of the last request head: where its body and its end go.
        self.receiving: Cycle
        # A cycle that heads the pipeline and waits for the end of data_received to start.
        self.starting: Cycle | None = None
        # Request heads seen; with the state, what the deadline sweep compares between runs.
        self.heads = 0
        self.wait = Wait()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but provide its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        self.batch = WriteBatch(self.loop, self.transport, JOIN_LIMIT)
        # The writer of every response on this connection, head of the pipeline first.
        self.response = H1Response(self.ctx, self.transport, self.batch)
        ctx = self.ctx
        self.idle_mark = ctx.requests
        # Computed once, shared by the connection's requests and whoever takes it over.
        self.info = ConnectionInfo.of(transport, ctx.proxy)
        if not ctx.admit(self, transport, self.loop.time()):
            self.transport.write(w.error_response(503, ctx.date_block))
            self.close()

    def data_received(self, data: bytes) -> None:
        if self.state is _IDLE:
            self.state = _NEW
        # Dispatch inline: this loop runs for every request and body chunk. No check between
        # events: a ParseFailed is always the last one, and a closed transport reads no more.
        for event in self.parser.feed(data):
            if type(event) is RequestHead:
                self.request_head(event)
            elif type(event) is MessageEnd:
                # The cycle of the last head, even if its response is already complete.
                if self.receiving.body_state is _RECEIVING:
                    self.receiving.end_body()
            elif type(event) is BodyChunk:
                if self.receiving.feed_body(event.data):
                    self.flow.pause_reading()
            elif type(event) is ParseFailed:
                self.parse_failed(event)
        if self.parser.held:
            self.flow.pause_reading()
        cycle = self.starting
        if cycle is not None:
            # Started once the whole read is dispatched, so that an app started eagerly
            # finds the body bytes that came with its head.
            self.starting = None
            self.ctx.start_request(cycle, EAGER_TASKS)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        for cycle in self.pipeline:
            cycle.disconnect()
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        # Each pause starts a new send_timeout wait, each resume a new header/idle wait.
        self.wait.restart()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.wait.restart()

    # -- events from the parser ------------------------------------------------------------
    def request_head(self, head: RequestHead) -> None:
        if head.upgrade is not None and self.parser.upgraded:
            self.switch_protocol(head)
            return
        self.state = _ACTIVE
        self.heads += 1
        ctx = self.ctx
        cycle = Cycle(
            self,
            self.response,
            http_scope(ctx, self.info, head),
            head.has_body,
            head.expect_continue,
            head.keep_alive and not ctx.draining,
        )
        # One clock read per request: the duration histogram and the access log share it.
        cycle.start_time = time.perf_counter()
        self.receiving = cycle
        pipeline = self.pipeline
        pipeline.append(cycle)
        if len(pipeline) == 1:
            self.starting = cycle
        else:
            # A pipelined request waits for the one before it; stop reading more meanwhile.
            self.flow.pause_reading()

    def switch_protocol(self, head: RequestHead) -> None:
        """The parser stopped after an upgrade head (WebSocket, h2c): hand the transport over."""
        if self.pipeline:
            # Earlier pipelined requests are still being answered: refuse the switch after them.
            self.pending_error = ParseFailed(400, "upgrade request pipelined behind others")
            self.flow.pause_reading()
            return
        self.state = _CLOSED
        self.ctx.connection_handed_over(self)
        data = self.parser.take_remaining()
        hand_over(self.ctx, self.transport, self.flow, head, info=self.info, data=data)

    def parse_failed(self, event: ParseFailed) -> None:
        logger.debug("bad request from %s: %s", self.info.client, event.reason)
        if not self.pipeline:
            self.write_error_and_close(event.status)
            return
        last = self.pipeline[-1]
        if last.body_state is _RECEIVING:
            # The failure is inside this request's body: it can never complete.
            if len(self.pipeline) == 1:
                last.disconnect()
                if last.response is _NOT_STARTED:
                    self.write_error_and_close(event.status)
                else:
                    self.close()
                return
            self.pipeline.pop()
        # Answer the requests before the bad one first, in order.
        self.pending_error = event
        self.flow.pause_reading()

    # -- running cycles --------------------------------------------------------------------

    def app_finished(self, cycle: Cycle) -> None:
        """The app returned (or raised): its task ends now. Replaces a done callback."""
        self.ctx.app_finished(cycle)

    # -- CycleOwner (the response side is H1Response's) ------------------------------------
    def body_consumed(self) -> None:
        if len(self.pipeline) <= 1 and not self.parser.held:
            self.flow.resume_reading()

    def response_complete(self, cycle: Cycle) -> None:
        """The head-of-line response is complete: start the next request, or go idle."""
        ctx = self.ctx
        ctx.finish_request(cycle)
        if not self.response.keep_alive:
            self.close()
            return
        pipeline = self.pipeline
        pipeline.popleft()
        if pipeline:
            # Not eager: a chain of pipelined requests started eagerly from each other's
            # completion would nest one Python frame stack per request.
            ctx.start_request(pipeline[0], False)
            if len(pipeline) == 1:
                self.read_more()
        elif self.pending_error is not None:
            self.write_error_and_close(self.pending_error.status)
        else:
            self.state = _IDLE
            self.idle_mark = ctx.requests
            if self.flow.read_paused:
                self.read_more()

    def read_more(self) -> None:
        """Parse what the parser holds of an earlier read first, then read the socket again."""
        if self.parser.held:
            # Soon, not now: this runs inside the app's send(), and parsing may start an app.
            self.loop.call_soon(self.parse_held)
        else:
            self.flow.resume_reading()

    def parse_held(self) -> None:
        if self.state is not _CLOSED and not self.transport.is_closing():
            # As if the socket were read again: parsing pauses reading for what it finds
            # (more pipelined requests, a body the app has not taken, more held bytes).
            self.flow.resume_reading()
            self.data_received(b"")

    def response_failed(self, cycle: Cycle) -> None:
        self.ctx.finish_request(cycle)
        if cycle.answer:
            self.transport.write(w.error_response(cycle.answer, self.ctx.date_block))
        self.close()

    # -- closing, deadlines, drain ---------------------------------------------------------
    def write_error_and_close(self, status: int) -> None:
        self.transport.write(w.error_response(status, self.ctx.date_block))
        self.close()

    def close(self) -> None:
        self.batch.flush()
        # Until connection_lost, the sweep keeps a send_timeout on the close: the transport
        # closes once its unsent bytes are taken, and a peer that stopped reading never takes
        # them, however few (below the high-water mark, writes never paused).
        self.state = _CLOSED
        if not self.transport.is_closing():
            self.transport.close()

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: send, header (slowloris) or keep-alive timeout."""
        state = self.state
        paused = self.flow.write_paused or state is _CLOSED
        if not paused and state is not _NEW and state is not _IDLE:
            return
        if state is _IDLE and self.ctx.orphaned:
            self.close()
            return
        waited = self.wait.waited((self.heads, state), now)
        if waited is None:
            return
        settings = self.ctx.settings
        if paused:
            if waited >= settings.send_timeout_s:
                self.abort()
            return
        if state is _NEW or self.parser.buffered_request_head:
            timeout = settings.header_timeout_s
        else:
            timeout = settings.keep_alive_timeout_s
        if waited >= timeout:
            self.close()

    def reuse_mark(self) -> int | None:
        """server.capacity: idle keep-alive, or accepted and not a byte of a request yet."""
        state = self.state
        if state is _IDLE or (
            state is _NEW and not self.heads and not self.parser.buffered_request_head
        ):
            return self.idle_mark
        return None

    def close_idle(self) -> None:
        self.close()

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection and whatever it was doing."""
        for cycle in self.pipeline:
            cycle.disconnect()
        self.transport.abort()
