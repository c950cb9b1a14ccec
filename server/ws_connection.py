"""One WebSocket connection after the handshake was handed over: wsproto <-> ASGI.

Rules: wsproto does all the framing, masking, UTF-8 checks and permessage-deflate (sans-IO);
this class only moves bytes between it and the transport and turns its events into ASGI
messages. States: HANDSHAKE (the app has websocket.connect; reading is paused, the client may
not send yet, RFC 6455 §4.1) -> OPEN -> CLOSING (our close frame is out, the client's is
awaited) -> CLOSED; or HANDSHAKE -> DENYING (the app's own HTTP response) -> CLOSED. Once
CLOSED, receive() gives websocket.disconnect and send() raises ClientDisconnected (ASGI spec
2.4). Deadlines (next ping, pong, close reply) are plain numbers the worker's once-a-second
sweep checks through check_deadline(), like HTTP/1.1's; the same sweep starts the 1001 close
once the worker drains.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from server import h1_writer as w
from server import ws_handshake as hs
from server.errors import ClientDisconnected
from server.flow import FlowControl
from server.types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from server.context import WorkerContext
    from server.ws_settings import WSSettings

logger = logging.getLogger("serve")

# Received messages the app has not taken yet, before reading from the socket pauses.
QUEUE_MAX_MESSAGES = 32
QUEUE_MAX_BYTES = 1024 * 1024
# Compressed bytes handed to wsproto at a time; deflate expands at most ~1032 times.
INFLATE_SLICE_BYTES = 4096
# How long a close frame we sent waits for the client's before the socket is closed anyway.
CLOSE_TIMEOUT_S = 10.0
# RFC 6455 §7.4.1 close codes the server itself sends or reports.
NORMAL, GOING_AWAY, ABNORMAL, TOO_BIG, INTERNAL_ERROR = 1000, 1001, 1006, 1009, 1011

_Texts = list[str]
_Blobs = list[bytes]


class WSState(enum.Enum):
    HANDSHAKE = 1
    DENYING = 2
    OPEN = 3
    CLOSING = 4
    CLOSED = 5


class WebSocketConnection(asyncio.Protocol):
    def __init__(
        self,
        ctx: WorkerContext,
        settings: WSSettings,
        *,
        transport: asyncio.Transport,
        flow: FlowControl,
        scope: Scope,
        offer: hs.ClientOffer,
        data: bytes,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.transport = transport
        self.flow = flow
        self.scope = scope
        self.offer = offer
        self.state = WSState.HANDSHAKE
        self.started = time.perf_counter()
        deflate = settings.per_message_deflate
        negotiated = hs.negotiate_deflate(offer.extensions) if deflate else None
        self.extensions_header = negotiated[1] if negotiated is not None else None
        # Created now, fed only once the app accepts: until then the client may not send
        # (RFC 6455 §4.1) and reading stays paused; anything early waits in `early`.
        self.ws = Connection(ConnectionType.SERVER, [negotiated[0]] if negotiated else None)
        self.early = data
        flow.pause_reading()
        self.queue: deque[Message] = deque([{"type": "websocket.connect"}])
        self.queued_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.fragments: list[str | bytes] = []
        self.fragments_size = 0
        self.denial: tuple[int, list[tuple[bytes, bytes]]] = (403, [])
        self.close_code = ABNORMAL
        self.close_reason = ""
        # loop.time() deadlines; 0.0 means none.
        self.next_ping = self.pong_deadline = self.close_deadline = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is WSState.OPEN or state is WSState.CLOSING:
            if self.extensions_header is None or len(data) <= INFLATE_SLICE_BYTES:
                self.ws.receive_data(data)
                self.handle_events()
                return
            # wsproto inflates whatever it holds in one go: feeding it slices bounds what one
            # compressed read can grow to before max_size is checked (a deflate bomb).
            view = memoryview(data)
            for start in range(0, len(data), INFLATE_SLICE_BYTES):
                self.ws.receive_data(bytes(view[start : start + INFLATE_SLICE_BYTES]))
                self.handle_events()
                if self.state is WSState.CLOSED:
                    return
        elif state is WSState.HANDSHAKE:
            self.early += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = WSState.CLOSED
        self.wake()
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- wsproto events --------------------------------------------------------------------
    def handle_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self.message_part(event.data, event.message_finished)
            elif isinstance(event, Ping):
                if self.ws.state is ConnectionState.OPEN:
                    self.transport.write(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pong_deadline = 0.0
            elif isinstance(event, CloseConnection):
                self.peer_closed(event)
            if self.state is WSState.CLOSED:
                return

    def message_part(self, data: str | bytes | bytearray, finished: bool) -> None:
        self.fragments.append(data if isinstance(data, str) else bytes(data))
        self.fragments_size += len(data)
        if self.fragments_size > self.settings.max_size:
            self.fail(TOO_BIG, "message too big")
            return
        if not finished:
            return
        parts, size = self.fragments, self.fragments_size
        self.fragments, self.fragments_size = [], 0
        if isinstance(data, str):
            message: Message = {"type": "websocket.receive", "text": "".join(cast(_Texts, parts))}
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(cast(_Blobs, parts))}
        self.queue.append(message)
        self.queued_bytes += size
        if self.queue_full():
            # The app is behind: stop reading until it catches up (see receive()).
            self.flow.pause_reading()
        self.wake()

    def peer_closed(self, event: CloseConnection) -> None:
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            # The client started the closing handshake: echo its code (RFC 6455 §5.5.1).
            self.transport.write(self.ws.send(event.response()))
        elif self.ws.state is ConnectionState.OPEN:
            # wsproto reports a frame it cannot accept as a close event carrying the code.
            self.transport.write(self.ws.send(CloseConnection(event.code, event.reason)))
        if self.state is not WSState.CLOSING:
            self.close_code, self.close_reason = int(event.code), event.reason or ""
        self.closed()

    # -- the ASGI callables ----------------------------------------------------------------
    async def receive(self) -> Message:
        while True:
            if self.queue:
                return self.take_message()
            if self.state is WSState.CLOSED:
                return {
                    "type": "websocket.disconnect",
                    "code": self.close_code,
                    "reason": self.close_reason,
                }
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    def take_message(self) -> Message:
        message = self.queue.popleft()
        if message["type"] == "websocket.receive":
            payload = message.get("text") or message.get("bytes") or b""
            self.queued_bytes -= len(payload)
            if self.state is not WSState.CLOSED and not self.queue_full():
                self.flow.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.state
        if state is WSState.OPEN:
            if kind == "websocket.send":
                self.send_data(message)
                await self.flow.drain()
                if self.state is WSState.CLOSED:
                    raise ClientDisconnected("the WebSocket closed before the client read it")
                return
            if kind == "websocket.close":
                self.start_close(int(message.get("code") or NORMAL), message.get("reason") or "")
                return
        elif state is WSState.HANDSHAKE:
            if kind == "websocket.accept":
                self.accept(message)
                return
            if kind == "websocket.close":
                self.respond_and_close(w.error_response(403, self.ctx.date_block), 403)
                return
            if kind == "websocket.http.response.start":
                self.denial = (int(message["status"]), list(message.get("headers", ())))
                self.state = WSState.DENYING
                return
        elif state is WSState.DENYING:
            if kind == "websocket.http.response.body":
                self.send_denial_body(message)
                return
        else:
            raise ClientDisconnected(f"{kind!r} sent on a closed WebSocket")
        raise RuntimeError(f"unexpected ASGI message {kind!r} in WebSocket state {state.name}")

    def accept(self, message: Message) -> None:
        response = hs.accept_response(
            self.offer,
            message.get("subprotocol"),
            self.extensions_header,
            message.get("headers") or (),
            self.ctx.date_block,
        )
        self.transport.write(response)
        self.state = WSState.OPEN
        self.handshake_done(101)
        interval = self.settings.ping_interval_s
        if interval:
            self.next_ping = asyncio.get_running_loop().time() + interval
        self.flow.resume_reading()
        if self.early:
            early, self.early = self.early, b""
            self.data_received(early)

    def send_data(self, message: Message) -> None:
        text, data = message.get("text"), message.get("bytes")
        if text is not None:
            event: TextMessage | BytesMessage = TextMessage(data=str(text))
        elif data is not None:
            event = BytesMessage(data=bytes(data))
        else:
            raise RuntimeError("websocket.send needs 'text' or 'bytes'")
        self.transport.write(self.ws.send(event))

    def send_denial_body(self, message: Message) -> None:
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        status, headers = self.denial
        if status:
            head = hs.denial_head(status, headers, None if more else len(body), self.ctx.date_block)
            self.denial = (0, [])  # the head is out; later messages carry only body
            self.transport.write(head + body)
            self.handshake_done(status)
        else:
            self.transport.write(body)
        if not more:
            self.closed()

    # -- running the app -------------------------------------------------------------------
    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the app's failure must never take the worker down
            if isinstance(exc, ClientDisconnected):
                logger.debug("WebSocket app ended after its client left: %s", exc)
            else:
                logger.error("exception in the ASGI app (websocket)", exc_info=exc)
            self.app_ended(INTERNAL_ERROR)
        else:
            if self.state is WSState.HANDSHAKE:
                logger.error("ASGI app returned without accepting or closing the WebSocket")
            self.app_ended(NORMAL)

    def app_ended(self, code: int) -> None:
        state = self.state
        if state is WSState.HANDSHAKE:
            self.respond_and_close(w.error_response(500, self.ctx.date_block), 500)
        elif state is WSState.OPEN:
            self.start_close(code, "")
        elif state is WSState.DENYING:
            # The denial response is unfinished: only closing the connection can end it.
            self.closed()

    # -- closing, deadlines, drain ---------------------------------------------------------
    def start_close(self, code: int, reason: str) -> None:
        """Send our close frame and wait (up to CLOSE_TIMEOUT_S) for the client's."""
        self.transport.write(self.ws.send(CloseConnection(code, reason or None)))
        self.state = WSState.CLOSING
        self.close_code, self.close_reason = code, reason
        self.close_deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT_S

    def fail(self, code: int, reason: str) -> None:
        """Close at once with `code` (no wait for the client's close frame)."""
        if self.ws.state is ConnectionState.OPEN:
            self.transport.write(self.ws.send(CloseConnection(code, reason)))
        self.close_code, self.close_reason = code, reason
        self.closed()

    def respond_and_close(self, response: bytes, status: int) -> None:
        self.transport.write(response)
        self.handshake_done(status)
        self.closed()

    def closed(self) -> None:
        """The WebSocket is over: the app hears it now (a send waiting for the client to
        read raises), the socket closes once flushed, or after send_timeout if it never is."""
        self.state = WSState.CLOSED
        self.wake()
        self.close_deadline = 0.0
        if self.flow.write_paused:
            now = asyncio.get_running_loop().time()
            self.close_deadline = now + self.ctx.settings.send_timeout_s
            self.flow.resume_writing()
        self.transport.close()

    def shutdown(self) -> None:
        """The worker drains: close an open WebSocket with 1001 (going away)."""
        if self.state is WSState.OPEN:
            self.start_close(GOING_AWAY, "server shutting down")

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: drain, keepalive ping, pong and close timeouts."""
        state = self.state
        if state is WSState.OPEN:
            if self.ctx.draining:
                self.shutdown()
            elif self.queue_full():
                # Reading is paused for the app's sake: a pong could not be read anyway.
                self.pong_deadline = 0.0
            elif self.pong_deadline and now >= self.pong_deadline:
                self.fail(INTERNAL_ERROR, "keepalive ping timeout")
            elif self.next_ping and now >= self.next_ping:
                self.ping(now)
        elif state is WSState.CLOSING and now >= self.close_deadline:
            self.closed()
        elif state is WSState.CLOSED and self.close_deadline and now >= self.close_deadline:
            self.transport.abort()

    def ping(self, now: float) -> None:
        interval = self.settings.ping_interval_s
        assert interval is not None
        self.next_ping = now + interval
        timeout = self.settings.ping_timeout_s
        if timeout is not None and not self.pong_deadline:
            self.pong_deadline = now + timeout
        self.transport.write(self.ws.send(Ping()))

    def abort(self) -> None:
        """The graceful deadline passed: drop the connection."""
        self.state = WSState.CLOSED
        self.wake()
        self.transport.abort()

    def reuse_mark(self) -> None:
        """A WebSocket never gives way to a new connection (server.capacity)."""

    close_idle = abort

    # -- helpers ---------------------------------------------------------------------------
    def queue_full(self) -> bool:
        return len(self.queue) >= QUEUE_MAX_MESSAGES or self.queued_bytes >= QUEUE_MAX_BYTES

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def handshake_done(self, status: int) -> None:
        ctx = self.ctx
        ctx.requests += 1
        access = ctx.access_logger
        if access is None:
            return
        scope = self.scope
        target = scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        duration_s = time.perf_counter() - self.started
        access.log(scope["client"], "GET", target, scope["http_version"], status, 0, duration_s)
