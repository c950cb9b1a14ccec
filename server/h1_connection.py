"""asyncio glue for one HTTP/1.1 connection: bytes in -> parser -> cycles -> bytes out.

Rules: the transport, the reads and the connection's life are here; the requests in order,
their cycles and the keep-alive decisions in server.h1_pipeline (a RequestPipeline the
connection owns), the response half in server.h1_response (an H1Response the pipeline's
cycles write through); where the transport goes after an Upgrade head is server.h1_upgrade's.
Framing decisions come from server.h1_parser (requests) and server.h1_response (responses);
ASGI rules live in server.cycle. Connection states follow Go's net/http (ConnState, kept by
the pipeline): waiting in NEW ends after header_timeout (slowloris), in IDLE after
keep_alive_timeout (header_timeout if part of a next head is buffered); the app's deadline
is request_timeout's (server.deadline), and a connection whose writes stay paused (a peer
that does not read), or whose close waits on such a peer, is aborted after send_timeout: a
close would wait for a flush that never comes. Time is kept by the worker's once-a-second
sweep, not per request: the sweep notes when it first finds a connection waiting, and
closes it once the wait is over its timeout. Hot path: enum members are read through module
aliases (an Enum class attribute goes through EnumType.__getattr__ on 3.11) and calls are
kept off the per-request path.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import cast

from serve.server import h1_writer as w
from serve.server.connection_info import ConnectionInfo
from serve.server.context import WorkerContext
from serve.server.deadline import Wait
from serve.server.events import BodyChunk, MessageEnd, ParseFailed, RequestHead
from serve.server.flow import FlowControl
from serve.server.h1_parser import H1Parser
from serve.server.h1_pipeline import ConnState, RequestPipeline
from serve.server.h1_response import JOIN_LIMIT, H1Response
from serve.server.h1_upgrade import hand_over
from serve.server.request_body import BodyState
from serve.server.write_batch import WriteBatch

logger = logging.getLogger("serve")

# Request heads parsed from one read; the rest of the read waits, unparsed, until the
# pipeline is answered down to its last request: a client that pipelines and never reads
# costs one read buffer, not a request cycle for each of the thousands of requests in it.
PIPELINE_MAX = 32
# 3.12+: the app runs at once inside data_received and a Task exists only if it suspends.
# On 3.11 an eager start is not available (apps need current_task() to be their Task).
EAGER_TASKS = sys.version_info >= (3, 12)
_NEW, _IDLE, _CLOSED = ConnState.NEW, ConnState.IDLE, ConnState.CLOSED
_RECEIVING = BodyState.RECEIVING


class H1Connection(asyncio.Protocol):
    # One per accepted connection: slots build it faster than a dict; its pipeline refers
    # back to it weakly (server.h1_pipeline).
    __slots__ = (
        "__weakref__",
        "batch",
        "ctx",
        "flow",
        "info",
        "parser",
        "requests",
        "transport",
        "wait",
    )

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.parser = H1Parser(ctx.settings.limits, ctx.upgrades, PIPELINE_MAX)
        self.wait = Wait()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.register(transport) is not None:
            self.requests.answer_without_head(503)

    def register(self, transport: asyncio.BaseTransport) -> str | None:
        """Set the connection up and register it with the worker; the setting it must be
        refused under (WorkerContext.admit), not answered yet."""
        # uvloop's transports do not subclass asyncio.Transport but provide its interface.
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport)
        ctx = self.ctx
        self.batch = WriteBatch(ctx.loop, self.transport, JOIN_LIMIT)
        # Computed once, shared by the connection's requests and whoever takes it over.
        self.info = ConnectionInfo.of(transport, ctx.proxy)
        response = H1Response(ctx, self.transport, self.batch)
        self.requests = RequestPipeline(self, ctx, self.parser, self.flow, response, self.info)
        return ctx.admit(self, transport, ctx.loop.time())

    def data_received(self, data: bytes) -> None:
        requests = self.requests
        if requests.state is _IDLE:
            requests.state = _NEW
        parser = self.parser
        starting = None
        # Dispatch inline: this loop runs for every request and body chunk. No check between
        # events: a ParseFailed is always the last one, and a closed transport reads no more.
        for event in parser.feed(data):
            if type(event) is RequestHead:
                if event.upgrade is not None and parser.upgraded:
                    self.switch_protocol(event)
                elif (cycle := requests.add(event)) is not None:
                    starting = cycle
            elif type(event) is MessageEnd:
                # The cycle of the last head, even if its response is already complete.
                receiving = requests.receiving
                if receiving.body.state is _RECEIVING:
                    receiving.body.end()
            elif type(event) is BodyChunk:
                if requests.receiving.body.feed(event.data):
                    self.flow.pause_reading()
            elif type(event) is ParseFailed:
                logger.debug("bad request from %s: %s", self.info.client, event.reason)
                requests.fail(event)
        if parser.held:
            self.flow.pause_reading()
        if starting is not None:
            # Started once the whole read is dispatched, so that an app started eagerly
            # finds the body bytes that came with its head.
            self.ctx.start_request(starting, EAGER_TASKS)

    def eof_received(self) -> bool:
        """The client half-closed (`nc -N`, shutdown(SHUT_WR)) or closed; both are one FIN.
        What it sent whole is still answered, in order, and then the connection closes (a
        client that is gone resets the first write, and the rest is dropped); an app waiting
        for more than its body hears http.disconnect at once. Over TLS asyncio closes the
        transport whatever this returns, so there the connection ends as at a close."""
        requests = self.requests
        if requests.state is _CLOSED or self.info.tls is not None:
            return False
        requests.client_finished()
        if requests.state is not _CLOSED and not self.parser.held:
            self.input_ended()
        return True

    def input_ended(self) -> None:
        """Every byte the client sent is parsed: a request it cut short is answered 400 after
        the ones before it, and with nothing left to answer the connection closes now."""
        for event in self.parser.feed_eof():
            self.requests.fail(cast(ParseFailed, event))
        if not self.requests.answering() and self.requests.state is not _CLOSED:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        requests = self.requests
        requests.state = _CLOSED
        requests.disconnect()
        # A bound method of the pipeline: kept, it would leave the pipeline to the cyclic GC.
        requests.client_gone = None
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        # Each pause starts a new send_timeout wait, each resume a new header/idle wait.
        self.wait.restart()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.wait.restart()

    def switch_protocol(self, head: RequestHead) -> None:
        """The parser stopped after an upgrade head (WebSocket, h2c): hand the transport over."""
        if self.requests.answering():
            # Earlier pipelined requests are still being answered: refuse the switch after them.
            self.requests.fail(ParseFailed(400, "upgrade request pipelined behind others"))
            return
        self.requests.state = _CLOSED
        self.ctx.connection_handed_over(self)
        data = self.parser.take_remaining()
        hand_over(self.ctx, self.transport, self.flow, head, info=self.info, data=data)

    # -- PipelineHost ------------------------------------------------------------------------
    def parse_held(self) -> None:
        requests = self.requests
        if requests.state is not _CLOSED and not self.transport.is_closing():
            # As if the socket were read again: parsing pauses reading for what it finds
            # (more pipelined requests, a body the app has not taken, more held bytes).
            if requests.client_gone is None:
                self.flow.resume_reading()
            self.data_received(b"")
            if requests.client_gone is not None and not self.parser.held:
                self.input_ended()

    def write_error_and_close(self, status: int) -> None:
        self.transport.write(w.error_response(status, self.ctx.date_block))
        self.close()

    def close(self) -> None:
        self.batch.flush()
        # Until connection_lost, the sweep keeps a send_timeout on the close: the transport
        # closes once its unsent bytes are taken, and a peer that stopped reading never takes
        # them, however few (below the high-water mark, writes never paused).
        self.requests.state = _CLOSED
        if not self.transport.is_closing():
            self.transport.close()

    # -- deadlines, capacity, drain (the worker's Connection) ------------------------------
    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: send, header (slowloris) or keep-alive timeout."""
        requests = self.requests
        state = requests.state
        paused = self.flow.write_paused or state is _CLOSED
        if not paused and state is not _NEW and state is not _IDLE:
            return
        if state is _IDLE and self.ctx.orphaned:
            self.close()
            return
        waited = self.wait.waited((requests.heads, state), now)
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
        requests = self.requests
        state = requests.state
        if state is _IDLE or (
            state is _NEW and not requests.heads and not self.parser.buffered_request_head
        ):
            return requests.idle_mark
        return None

    def close_idle(self) -> None:
        self.close()

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection and whatever it was doing."""
        self.requests.disconnect()
        self.transport.abort()
