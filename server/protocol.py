"""asyncio glue for one HTTP/1.1 connection: bytes in -> parser -> cycles -> bytes out.

Rules: the only worker code that touches a transport. Framing decisions come from
server.h1_parser (requests) and server.h1_writer (responses); ASGI rules live in
server.cycle. Connection states follow Go's net/http: NEW (accepted, no request yet),
ACTIVE (a request in progress), IDLE (keep-alive, between requests), CLOSED. Each
connection has one deadline: header_timeout while a head is awaited on a new connection or
after the first bytes of a request, keep_alive_timeout while idle, none while the app works.
Deadlines are plain numbers that the worker's once-a-second sweep checks, because arming
and cancelling a loop timer twice per request costs more than the whole sweep.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import cast

from server import h1_writer as w
from server.context import ASGI_INFO, WorkerContext
from server.cycle import BodyState, Cycle, ResponseState
from server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from server.flow import FlowControl
from server.h1_parser import H1Parser

logger = logging.getLogger("serve")


class ConnState(enum.Enum):
    NEW = 1
    ACTIVE = 2
    IDLE = 3
    CLOSED = 4


class Framing(enum.Enum):
    NONE = 1  # HEAD, 1xx, 204, 304: no body whatever the app sends
    LENGTH = 2  # Content-Length
    CHUNKED = 3
    CLOSE = 4  # HTTP/1.0 without a length: the body ends when the connection does


def _addr(info: object) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class H1Connection(asyncio.Protocol):
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.parser = H1Parser(ctx.settings.limits)
        self.state = ConnState.NEW
        self.pipeline: deque[Cycle] = deque()
        self.pending_error: ParseFailed | None = None
        # loop.time() after which an idle or new connection is closed; 0.0 means none.
        self.deadline = 0.0
        # Response framing of the cycle at the head of the pipeline.
        self.framing = Framing.NONE
        self.remaining = 0
        self.keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but provide its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        ctx = self.ctx
        ctx.connections.add(self)
        self.server = _addr(transport.get_extra_info("sockname"))
        self.client = _addr(transport.get_extra_info("peername"))
        if self.server is None:
            # A unix socket: ASGI names the server by its path and has no client address.
            self.server = (str(transport.get_extra_info("sockname")), 0)
        self.trusted = ctx.proxy is not None and ctx.proxy.trusts(
            self.client[0] if self.client else None
        )
        limit = ctx.settings.limit_concurrency
        if limit is not None and len(ctx.connections) > limit:
            self.transport.write(w.error_response(503, ctx.date_block))
            self.close()
            return
        self.arm_timer(ctx.settings.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self.state is ConnState.IDLE:
            self.state = ConnState.NEW
            self.arm_timer(self.ctx.settings.header_timeout_s)
        for event in self.parser.feed(data):
            # Dispatch inline: this loop runs for every request and body chunk.
            if self.state is ConnState.CLOSED or self.pending_error is not None:
                return
            if type(event) is RequestHead:
                self.request_head(event)
            elif type(event) is MessageEnd:
                self.pipeline[-1].end_body()
            elif type(event) is BodyChunk:
                if self.pipeline[-1].feed_body(event.data):
                    self.flow.pause_reading()
            elif type(event) is ParseFailed:
                self.parse_failed(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = ConnState.CLOSED
        self.cancel_timer()
        for cycle in self.pipeline:
            cycle.disconnect()
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- events from the parser ------------------------------------------------------------
    def request_head(self, head: RequestHead) -> None:
        self.cancel_timer()
        self.state = ConnState.ACTIVE
        ctx = self.ctx
        client, scheme = self.client, "http"
        if self.trusted:
            assert ctx.proxy is not None
            client, scheme = ctx.proxy.resolve(client, scheme, head.headers)
        scope = {
            "type": "http",
            "asgi": ASGI_INFO,
            "http_version": head.http_version,
            "server": self.server,
            "client": client,
            "scheme": scheme,
            "method": head.method,
            "root_path": ctx.root_path,
            "path": ctx.root_path + head.path,
            "raw_path": ctx.root_path_bytes + head.raw_path,
            "query_string": head.query_string,
            "headers": head.headers,
            "state": ctx.lifespan_state.copy(),
        }
        cycle = Cycle(
            self,
            scope,
            has_body=head.has_body,
            expect_continue=head.expect_continue,
            keep_alive=head.keep_alive and not ctx.draining,
            start_time=time.perf_counter() if ctx.access_logger is not None else 0.0,
        )
        self.pipeline.append(cycle)
        if len(self.pipeline) == 1:
            self.run(cycle)
        else:
            # A pipelined request waits for the one before it; stop reading more meanwhile.
            self.flow.pause_reading()

    def parse_failed(self, event: ParseFailed) -> None:
        logger.debug("bad request from %s: %s", self.client, event.reason)
        if not self.pipeline:
            self.write_error_and_close(event.status)
            return
        last = self.pipeline[-1]
        if last.body_state is BodyState.RECEIVING:
            # The failure is inside this request's body: it can never complete.
            if len(self.pipeline) == 1:
                last.disconnect()
                if last.response is ResponseState.NOT_STARTED:
                    self.write_error_and_close(event.status)
                else:
                    self.close()
                return
            self.pipeline.pop()
        # Answer the requests before the bad one first, in order.
        self.pending_error = event
        self.flow.pause_reading()

    # -- running cycles --------------------------------------------------------------------
    def run(self, cycle: Cycle) -> None:
        self.framing = Framing.NONE
        self.keep_alive = cycle.keep_alive
        task = self.loop.create_task(cycle.run(self.ctx.app))
        self.ctx.tasks.add(task)
        task.add_done_callback(self.ctx.task_done)

    def next_cycle(self) -> None:
        """The head-of-line response is complete: start the next request, or go idle."""
        self.pipeline.popleft()
        if self.pipeline:
            self.run(self.pipeline[0])
            if len(self.pipeline) == 1:
                self.flow.resume_reading()
            return
        if self.pending_error is not None:
            self.write_error_and_close(self.pending_error.status)
            return
        self.state = ConnState.IDLE
        self.flow.resume_reading()
        if self.parser.buffered_request_head:
            self.state = ConnState.NEW
            self.arm_timer(self.ctx.settings.header_timeout_s)
        else:
            self.arm_timer(self.ctx.settings.keep_alive_timeout_s)

    # -- CycleOwner: what a cycle asks of its connection -----------------------------------
    def start_response(
        self, cycle: Cycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes, more: bool
    ) -> None:
        declared: int | None = None
        keep_alive = self.keep_alive and not self.ctx.draining
        out_headers = headers
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                declared = _parse_length(value)
            elif lname == b"connection":
                if b"close" in value.lower():
                    keep_alive = False
            elif lname == b"transfer-encoding":
                # We frame the body ourselves; an app's own header would frame it twice.
                out_headers = [h for h in headers if h[0].lower() != b"transfer-encoding"]
        if cycle.head_request or w.status_has_no_body(status):
            framing = Framing.NONE
            extra = w.content_length(len(body)) if declared is None and body and not more else b""
        elif declared is not None:
            if len(body) > declared:
                raise w.InvalidResponse("response body longer than its Content-Length")
            framing, extra = Framing.LENGTH, b""
        elif not more:
            framing, declared, extra = Framing.LENGTH, len(body), w.content_length(len(body))
        elif cycle.scope["http_version"] == "1.1":
            framing, extra = Framing.CHUNKED, w.TRANSFER_CHUNKED
        else:
            framing, extra, keep_alive = Framing.CLOSE, b"", False
        if cycle.body_state is BodyState.RECEIVING:
            # The app answered before reading the whole body: the rest cannot be framed
            # reliably from here, so this connection ends with this response.
            keep_alive = False
        if keep_alive:
            if cycle.scope["http_version"] == "1.0":
                extra += w.CONNECTION_KEEP_ALIVE
        else:
            extra += w.CONNECTION_CLOSE
        head = b"".join(
            (
                w.status_line(status),
                w.encode_headers(out_headers),
                extra,
                self.ctx.date_block,
                b"\r\n",
            )
        )
        self.framing = framing
        self.remaining = declared or 0
        self.keep_alive = keep_alive
        if framing is Framing.NONE or not body:
            self.transport.write(head)
            return
        self.transport.write(head + self.frame(body))
        cycle.bytes_sent += len(body)

    def frame(self, body: bytes) -> bytes:
        if self.framing is Framing.CHUNKED:
            return w.chunk(body)
        if self.framing is Framing.LENGTH:
            self.remaining -= len(body)
            if self.remaining < 0:
                self.keep_alive = False
                raise RuntimeError("response body longer than its Content-Length")
        return body

    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
        if body and self.framing is not Framing.NONE:
            self.transport.write(self.frame(body))
            cycle.bytes_sent += len(body)
        if not more:
            if self.framing is Framing.CHUNKED:
                self.transport.write(w.CHUNKED_END)
            elif self.framing is Framing.LENGTH and self.remaining > 0:
                logger.error("response ended %d bytes short of its Content-Length", self.remaining)
                self.keep_alive = False

    def send_continue(self) -> None:
        self.transport.write(w.CONTINUE_100)

    def body_consumed(self) -> None:
        if len(self.pipeline) <= 1:
            self.flow.resume_reading()

    def response_complete(self, cycle: Cycle) -> None:
        self.ctx.requests += 1
        if self.ctx.access_logger is not None:
            self.log_access(cycle)
        if not self.keep_alive:
            self.close()
            return
        self.next_cycle()

    def response_failed(self, cycle: Cycle) -> None:
        self.ctx.requests += 1
        if self.ctx.access_logger is not None:
            self.log_access(cycle)
        if cycle.status == 500:
            self.transport.write(w.error_response(500, self.ctx.date_block))
        self.close()

    async def drain(self) -> None:
        await self.flow.drain()

    def log_access(self, cycle: Cycle) -> None:
        assert self.ctx.access_logger is not None
        scope = cycle.scope
        target = scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        self.ctx.access_logger.log(
            scope["client"],
            scope["method"],
            target,
            scope["http_version"],
            cycle.status,
            cycle.bytes_sent,
            time.perf_counter() - cycle.start_time,
        )

    # -- closing, timers, drain ------------------------------------------------------------
    def write_error_and_close(self, status: int) -> None:
        self.transport.write(w.error_response(status, self.ctx.date_block))
        self.close()

    def close(self) -> None:
        self.cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def arm_timer(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def cancel_timer(self) -> None:
        self.deadline = 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: header timeout (slowloris) or keep-alive timeout."""
        if self.deadline and now >= self.deadline and self.state in (ConnState.NEW, ConnState.IDLE):
            self.close()

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection and whatever it was doing."""
        for cycle in self.pipeline:
            cycle.disconnect()
        self.transport.abort()


def _parse_length(value: bytes) -> int:
    if not value.isdigit():
        raise w.InvalidResponse(f"invalid Content-Length {value!r} from the app")
    return int(value)
