"""asyncio glue for one HTTP/1.1 connection: bytes in -> parser -> cycles -> bytes out.

Rules: the request half and the connection's life are here, the response half in
server.h1_response (inherited). Framing decisions come from server.h1_parser (requests) and
server.h1_writer (responses); ASGI rules live in server.cycle. Connection states follow Go's
net/http: NEW (accepted, or the first bytes of a request arrived), ACTIVE (a request in
progress), IDLE (keep-alive, between requests), CLOSED. Waiting in NEW ends after
header_timeout (slowloris), in IDLE after keep_alive_timeout (header_timeout if part of a
next head is buffered); the app's deadline is request_timeout's (server.deadline), and a
connection whose writes stay paused (a peer that does not read), or whose close waits on
such a peer, is aborted after send_timeout: a close would wait for a flush that never
comes. Time is kept by the worker's once-a-second sweep, not per request: the sweep notes
when it first finds a connection waiting, and closes it once the wait is over its timeout.
Hot path: enum members are read through module aliases (an Enum class attribute goes
through EnumType.__getattr__ on 3.11) and calls are kept off the per-request path.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
from collections import deque
from operator import itemgetter
from typing import cast

from server import h1_writer as w
from server.context import ASGI_INFO, WorkerContext
from server.cycle import BodyState, Cycle, ResponseState
from server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from server.flow import FlowControl
from server.h1_parser import H1Parser
from server.h1_response import JOIN_LIMIT, Framing, H1ResponseWriter
from server.proxy import FORWARDING_FIELDS
from server.stats import STATS
from server.tls import tls_extension
from server.write_batch import WriteBatch

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
NO_BODY = Framing.NONE
_RECEIVING = BodyState.RECEIVING
_NOT_STARTED = ResponseState.NOT_STARTED
_field_name = itemgetter(0)


def inet_address(info: object) -> tuple[str, int] | None:
    """(host, port) of a sockname/peername extra-info value; None for a unix socket."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class H1Connection(H1ResponseWriter, asyncio.Protocol):
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
        self.waiting: tuple[int, ConnState] | None = None
        self.waiting_since = 0.0
        # Response framing of the cycle at the head of the pipeline.
        self.framing = NO_BODY
        self.remaining = 0
        self.keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but provide its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        self.batch = WriteBatch(self.loop, self.transport, JOIN_LIMIT)
        ctx = self.ctx
        cap = ctx.cap
        self.idle_mark = ctx.requests
        room = cap is None or cap.admit(len(ctx.connections) + 1, ctx.connections, self.loop.time())
        ctx.connections.add(self)
        if ctx.load is not None:
            ctx.load.accepted(transport)
        self.server = inet_address(transport.get_extra_info("sockname"))
        self.client = inet_address(transport.get_extra_info("peername"))
        if self.server is None:
            # A unix socket: ASGI names the server by its path and has no client address.
            self.server = (str(transport.get_extra_info("sockname")), 0)
        # TLS facts belong to the connection: computed once, shared by its requests.
        ssl_object = transport.get_extra_info("ssl_object")
        self.scheme = "http" if ssl_object is None else "https"
        self.tls_info = None if ssl_object is None else tls_extension(ssl_object)
        self.trusted = ctx.proxy is not None and ctx.proxy.trusts(
            self.client[0] if self.client else None
        )
        limit = ctx.settings.limit_concurrency
        if not room or (limit is not None and len(ctx.connections) > limit):
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
        if self.parser.holding:
            self.flow.pause_reading()
        cycle = self.starting
        if cycle is not None:
            # Started once the whole read is dispatched, so that an app started eagerly
            # finds the body bytes that came with its head.
            self.starting = None
            self.run(cycle, EAGER_TASKS)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        for cycle in self.pipeline:
            cycle.disconnect()
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        # Each pause starts a new send_timeout wait, each resume a new header/idle wait.
        self.waiting = None

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.waiting = None

    # -- events from the parser ------------------------------------------------------------
    def request_head(self, head: RequestHead) -> None:
        if head.upgrade is not None and self.parser.upgraded:
            self.switch_protocol(head)
            return
        self.state = _ACTIVE
        self.heads += 1
        ctx = self.ctx
        client, scheme, headers = self.client, self.scheme, head.headers
        if self.trusted and not FORWARDING_FIELDS.isdisjoint(map(_field_name, headers)):
            assert ctx.proxy is not None
            client, scheme = ctx.proxy.resolve(client, scheme, headers)
        root_path = ctx.root_path
        scope = {
            "type": "http",
            "asgi": ASGI_INFO,
            "http_version": head.http_version,
            "server": self.server,
            "client": client,
            "scheme": scheme,
            "method": head.method,
            "root_path": root_path,
            "path": root_path + head.path if root_path else head.path,
            "raw_path": ctx.root_path_bytes + head.raw_path if root_path else head.raw_path,
            "query_string": head.query_string,
            "headers": headers,
            "state": ctx.lifespan_state.copy(),
        }
        if self.tls_info is not None:
            scope["extensions"] = {"tls": self.tls_info}
        cycle = Cycle(
            self, scope, head.has_body, head.expect_continue, head.keep_alive and not ctx.draining
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
        self.ctx.connections.discard(self)
        if head.upgrade == b"h2c":
            # Imported on the first upgrade, as for WebSockets below.
            from server.h2_handover import take_over_upgrade

            take_over_upgrade(
                self.ctx,
                self.transport,
                self.flow,
                head,
                self.parser.take_remaining(),
                server=self.server,
                client=self.client,
                trusted=self.trusted,
            )
            return
        # Imported on the first upgrade: wsproto is not needed by a worker that serves none.
        from server.ws import take_over

        take_over(
            self.ctx,
            self.ctx.settings.ws,
            self.transport,
            self.flow,
            head,
            server=self.server,
            client=self.client,
            trusted=self.trusted,
            data=self.parser.take_remaining(),
        )

    def parse_failed(self, event: ParseFailed) -> None:
        logger.debug("bad request from %s: %s", self.client, event.reason)
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
    def run(self, cycle: Cycle, eager: bool) -> None:
        """Start the app for the cycle at the head of the pipeline.

        `eager` only from data_received: a chain of pipelined requests started eagerly from
        each other's completion would nest one Python frame stack per request.
        """
        self.framing = NO_BODY
        self.keep_alive = cycle.keep_alive
        ctx = self.ctx
        if ctx.shedding:
            ctx.shed(cycle)
            return
        if sys.version_info >= (3, 12) and eager:
            task = asyncio.Task(cycle.run(ctx.app), loop=self.loop, eager_start=True)
            if task.done():
                return
        else:
            task = self.loop.create_task(cycle.run(ctx.app))
        ctx.app_started(cycle, task)

    def app_finished(self, cycle: Cycle) -> None:
        """The app returned (or raised): its task ends now. Replaces a done callback."""
        self.ctx.app_finished(cycle)

    # -- CycleOwner (the response side is H1ResponseWriter's) ------------------------------
    def body_consumed(self) -> None:
        if len(self.pipeline) <= 1 and not self.parser.holding:
            self.flow.resume_reading()

    def response_complete(self, cycle: Cycle) -> None:
        """The head-of-line response is complete: start the next request, or go idle."""
        ctx = self.ctx
        ctx.requests += 1
        STATS.record(cycle.status, time.perf_counter() - cycle.start_time)
        if ctx.access_logger is not None:
            self.log_access(cycle)
        if not self.keep_alive:
            self.close()
            return
        pipeline = self.pipeline
        pipeline.popleft()
        if pipeline:
            self.run(pipeline[0], False)
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
        if self.parser.holding:
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
        self.ctx.requests += 1
        STATS.record(cycle.status, time.perf_counter() - cycle.start_time)
        if self.ctx.access_logger is not None:
            self.log_access(cycle)
        if cycle.answer:
            self.transport.write(w.error_response(cycle.answer, self.ctx.date_block))
        self.close()

    def log_access(self, cycle: Cycle) -> None:
        assert self.ctx.access_logger is not None
        duration_s = time.perf_counter() - cycle.start_time
        self.ctx.access_logger.log_scope(cycle.scope, cycle.status, cycle.bytes_sent, duration_s)

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
        mark = (self.heads, state)
        if mark != self.waiting:
            # The connection started waiting since the last sweep: its wait starts now.
            self.waiting, self.waiting_since = mark, now
            return
        settings = self.ctx.settings
        if paused:
            if now - self.waiting_since >= settings.send_timeout_s:
                self.abort()
            return
        if state is _NEW or self.parser.buffered_request_head:
            timeout = settings.header_timeout_s
        else:
            timeout = settings.keep_alive_timeout_s
        if now - self.waiting_since >= timeout:
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
