"""One ASGI HTTP request/response cycle: the `receive`/`send` pair and its state machine.

Rules: protocol-neutral. The cycle knows ASGI, not HTTP/1.1 framing: it asks its writer
(a `ResponseWriter`: server.h1_response, or an HTTP/2 stream) to write a response start or
body, which frames them, and tells its owner (a `CycleOwner`: the connection or stream)
how the request goes. The connection feeds the request body to `cycle.body` (a RequestBody,
server.request_body). The response side moves NOT_STARTED -> STARTED -> STREAMING -> DONE,
through TRAILERS when http.response.start promised trailers (`trailers: True`): the last
body message is then followed by http.response.trailers messages, which a writer with
`send_trailers` (HTTP/2) sends and any other writer (HTTP/1.1) drops. Once the connection
(or stream) is lost, `send` raises ClientDisconnected, an OSError (ASGI spec 2.4), also when
it was waiting for the client to read, and `receive` returns http.disconnect; ASGI misuse
raises RuntimeError into the app (those errors, and running the app itself, are
server.app_run's, shared with WebSocket; `app_ended` is this side's part of it).
Hot path: states are compared against module-level aliases, because reading a member off an
Enum class goes through EnumType.__getattr__ on 3.11, several times the cost of a global.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from typing import Protocol

from serve.server.app_run import (
    closed_while_sending,
    returned_unfinished,
    sent_after_close,
    sent_after_end,
    unexpected,
)
from serve.server.request_body import BodyState, RequestBody
from serve.server.types import Message, Scope


class ResponseState(enum.Enum):
    NOT_STARTED = 1
    STARTED = 2  # http.response.start seen; nothing written yet (head waits for the body)
    STREAMING = 3  # head written, more body expected
    TRAILERS = 4  # body complete, trailers promised and not all sent yet
    DONE = 5


_DELIVERED = BodyState.DELIVERED
_NOT_STARTED, _STARTED = ResponseState.NOT_STARTED, ResponseState.STARTED
_STREAMING, _DONE = ResponseState.STREAMING, ResponseState.DONE
_TRAILERS = ResponseState.TRAILERS
TrailerSender = Callable[["Cycle", Iterable[tuple[bytes, bytes]], bool], None]


class WriteFlow(Protocol):
    """The write side of the owner's flow control (server.flow.FlowControl)."""

    write_paused: bool

    async def drain(self) -> None: ...


class ResponseWriter(Protocol):
    """What frames and writes the cycle's response."""

    def start_response(
        self,
        cycle: Cycle,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        more: bool,
    ) -> None: ...
    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None: ...
    def send_continue(self) -> None: ...


class CycleOwner(Protocol):
    """What a cycle needs from the connection (or stream) that carries it."""

    # Read after every body message that says more follows: send() waits while paused,
    # and costs no call otherwise.
    @property
    def flow(self) -> WriteFlow: ...
    # Set once the client sends nothing more (an HTTP/1.1 FIN): what ends the connection
    # as at a close when an app waits for more than its request body.
    @property
    def client_gone(self) -> Callable[[], None] | None: ...

    def body_consumed(self) -> None: ...
    def response_complete(self, cycle: Cycle) -> None: ...
    def response_failed(self, cycle: Cycle) -> None: ...
    # The client left after the app began its response and before the response ended.
    def response_cut(self, cycle: Cycle) -> None: ...


class Cycle:
    __slots__ = (
        "_headers",
        "_owner",
        "_trailer_sender",
        "_writer",
        "answer",
        "body",
        "bytes_sent",
        "disconnected",
        "expect_continue",
        "head_request",
        "keep_alive",
        "response",
        "scope",
        "start_time",
        "status",
        "task",
        "trailers",
    )

    def __init__(  # noqa: PLR0917  (positional: see below)
        self,
        owner: CycleOwner,
        writer: ResponseWriter,
        scope: Scope,
        has_body: bool,
        expect_continue: bool,
        keep_alive: bool,
    ) -> None:
        # Positional parameters: a class called with keywords builds a kwargs dict on 3.11.
        self._owner = owner
        self._writer = writer
        self.scope = scope
        # What the request allows; the connection may still close (drain, framing).
        self.keep_alive = keep_alive
        self.head_request = scope["method"] == "HEAD"
        self.expect_continue = expect_continue and has_body
        self.body = RequestBody(owner, has_body)
        self.response = _NOT_STARTED
        self.disconnected = False
        # The app's status from http.response.start; `answer` if the server answers for it.
        self.status = 0
        # The status the server answers in the app's place (500, or 504 at request_timeout)
        # when it fails before its head went out; 0 while there is none.
        self.answer = 0
        self._headers: Iterable[tuple[bytes, bytes]] = ()
        # For the access log only; the owner sets start_time when it keeps one.
        self.bytes_sent = 0
        self.start_time = 0.0
        # The app's Task, set by the owner that starts it (None while the app runs eagerly).
        self.task: asyncio.Task[None] | None = None
        # http.response.start promised trailers; the writer's send_trailers, if it has one.
        self.trailers = False
        self._trailer_sender: TrailerSender | None = None

    def disconnect(self) -> None:
        """The client left: receive() answers http.disconnect from now on. A response begun
        and not ended is accounted as it stands (as uvicorn logs one at its start) on the
        next loop turn: an HTTP/2 stream can be lost inside the send that ends it."""
        if self.disconnected:
            return
        self.disconnected = True
        self.body.drop()
        if self.response is not _NOT_STARTED and self.response is not _DONE:
            asyncio.get_running_loop().call_soon(self._account_cut)

    def _account_cut(self) -> None:
        # Still not ended, and not answered by the server in the app's place meanwhile.
        if self.response is not _DONE and not self.answer:
            self._owner.response_cut(self)

    # -- the ASGI callables ----------------------------------------------------------------
    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            # http.response.start alone writes nothing yet (the head waits for the body), so
            # the interim response can still go first.
            state = self.response
            if (state is _NOT_STARTED or state is _STARTED) and not self.disconnected:
                self._writer.send_continue()
        body = self.body
        while True:
            if self.disconnected:
                return {"type": "http.disconnect"}
            message = body.take()
            if message is not None:
                return message
            if body.state is _DELIVERED:
                if self.response is _DONE:
                    # ASGI: receive after the response is sent reports the request as finished.
                    return {"type": "http.disconnect"}
                gone = self._owner.client_gone
                if gone is not None:
                    # A half-close and a close are one FIN to us: an app that waits for more
                    # than its body is told the client left, as at a close.
                    gone()
                    continue
            await body.wait()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.response
        if self.disconnected and state is not _DONE:
            raise sent_after_close(kind)
        if state is _NOT_STARTED:
            if kind != "http.response.start":
                raise unexpected(kind, "'http.response.start'")
            status = message["status"]
            self.status = status if type(status) is int else int(status)
            # Kept as given: the head is encoded (and checked) with the first body message.
            self._headers = message.get("headers", ())
            self.response = _STARTED
            # `in` rather than .get(): no call for the usual message without the key.
            if "trailers" in message and message["trailers"]:  # noqa: RUF019
                self.trailers = True
                self._trailer_sender = getattr(self._writer, "send_trailers", None)
            return
        if state is _DONE:
            raise sent_after_end(kind, "the response")
        if kind != "http.response.body" or state is _TRAILERS:
            self._send_trailers(kind, message)
            return
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)
        more = message.get("more_body", False)
        # With trailers to send, the body's last message does not end the response on the wire.
        wire_more = more or self._trailer_sender is not None
        if state is _STARTED:
            self._writer.start_response(self, self.status, self._headers, body, wire_more)
            self.response = _STREAMING
        else:
            self._writer.send_body(self, body, wire_more)
        if more:
            flow = self._owner.flow
            if flow.write_paused:
                await flow.drain()
                if self.disconnected:
                    raise closed_while_sending(kind)
            return
        if self.trailers:
            self.response = _TRAILERS
            return
        # Inline rather than self._complete(): this runs once per request.
        self.response = _DONE
        if self.body.waiter is not None:
            self.body.wake()
        self._owner.response_complete(self)

    def _send_trailers(self, kind: str, message: Message) -> None:
        if self.response is not _TRAILERS:
            if kind == "http.response.trailers" and self.trailers:
                raise RuntimeError("'http.response.trailers' before the end of the body")
            raise unexpected(kind, "'http.response.body'")
        if kind != "http.response.trailers":
            raise unexpected(kind, "'http.response.trailers'")
        more = message.get("more_trailers", False)
        sender = self._trailer_sender
        if sender is not None:
            sender(self, message.get("headers", ()), more)
        if not more:
            self._complete()

    def _complete(self) -> None:
        self.response = _DONE
        if self.body.waiter is not None:
            self.body.wake()
        self._owner.response_complete(self)

    # -- how the app ended (server.app_run) --------------------------------------------------
    def app_ended(self, failed: bool) -> None:
        if self.response is not _DONE:
            if not failed:
                returned_unfinished("the response")
            self._fail_response()

    def refuse(self, status: int) -> None:
        """The server answers `status` in place of an app it does not start (shedding)."""
        self._fail_response(status)

    def time_out(self) -> None:
        """request_timeout passed (server.deadline cancels the app next): 504 if nothing was
        written yet, else the owner cuts the response. The app, in its cancellation handler,
        then hears http.disconnect and its sends are dropped, as after a lost client."""
        if self.response is not _DONE and not self.disconnected:
            self._fail_response(504)
        self.disconnect()

    def _fail_response(self, status: int = 500) -> None:
        """`status` when nothing was written yet, else the connection is closed mid-response."""
        if self.response is _NOT_STARTED or self.response is _STARTED:
            self.status = self.answer = status
        self.response = _DONE
        self.body.wake()
        self._owner.response_failed(self)
