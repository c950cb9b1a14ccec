"""One WebSocket connection after the handshake was handed over: wsproto <-> the transport.

Rules: wsproto does all the framing, masking, UTF-8 checks and permessage-deflate (sans-IO);
this class only moves bytes between it and the transport, and owns the connection's state.
The app's side is elsewhere: what it receives is the Inbox's (server.ws_inbox), what it sends
goes through server.ws_asgi, the handshake's HTTP answer is server.ws_reply's. States:
HANDSHAKE (the app has websocket.connect; reading is paused, the client may not send yet,
RFC 6455 §4.1) -> OPEN -> CLOSING (our close frame is out, the client's is awaited) ->
CLOSED; or HANDSHAKE -> DENYING (the app's own HTTP response) -> CLOSED. Deadlines (next
ping, pong, close reply) are plain numbers the worker's once-a-second sweep checks through
check_deadline(), like HTTP/1.1's; the same sweep starts the 1001 close once the worker
drains, and aborts an open WebSocket whose client has not read for send_timeout (its writes
paused all along), as HTTP does: the app's waiting send raises then, not at a ping timeout.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from serve.server import ws_handshake as hs
from serve.server.deadline import Wait
from serve.server.flow import FlowControl
from serve.server.types import Message, Scope
from serve.server.ws_inbox import Inbox
from serve.server.ws_reply import HandshakeReply

if TYPE_CHECKING:
    from serve.server.context import WorkerContext
    from serve.server.ws_settings import WSSettings

logger = logging.getLogger("serve")

# Compressed bytes handed to wsproto at a time; deflate expands at most ~1032 times.
INFLATE_SLICE_BYTES = 4096
# How long a close frame we sent waits for the client's before the socket is closed anyway.
CLOSE_TIMEOUT_S = 10.0
# RFC 6455 §7.4.1 close codes the server itself sends or reports.
NORMAL, GOING_AWAY, ABNORMAL, TOO_BIG, INTERNAL_ERROR = 1000, 1001, 1006, 1009, 1011


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
        self.state = WSState.HANDSHAKE
        deflate = settings.per_message_deflate
        negotiated = hs.negotiate_deflate(offer.extensions) if deflate else None
        self.deflate = negotiated is not None
        self.reply = HandshakeReply(
            ctx, transport, scope, offer, negotiated[1] if negotiated is not None else None
        )
        # Created now, fed only once the app accepts: until then the client may not send
        # (RFC 6455 §4.1) and reading stays paused; anything early waits in `early`.
        self.ws = Connection(ConnectionType.SERVER, [negotiated[0]] if negotiated else None)
        self.early = data
        flow.pause_reading()
        # What the app's receive() gives: websocket.connect first.
        self.inbox = Inbox(flow, settings.max_size)
        self.close_code = ABNORMAL
        self.close_reason = ""
        # loop.time() deadlines; 0.0 means none.
        self.next_ping = self.pong_deadline = self.close_deadline = 0.0
        # How long writes have stayed paused (send_timeout), measured by the sweep.
        self.stalled = Wait()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is WSState.OPEN or state is WSState.CLOSING:
            if not self.deflate or len(data) <= INFLATE_SLICE_BYTES:
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
        self.inbox.end(self.close_code, self.close_reason)
        self.flow.resume_writing()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        self.stalled.restart()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.stalled.restart()

    # -- wsproto events --------------------------------------------------------------------
    def handle_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                if not self.inbox.add_part(event.data, event.message_finished):
                    self.fail(TOO_BIG, "message too big")
            elif isinstance(event, Ping):
                if self.ws.state is ConnectionState.OPEN:
                    self.transport.write(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pong_deadline = 0.0
            elif isinstance(event, CloseConnection):
                self.peer_closed(event)
            if self.state is WSState.CLOSED:
                return

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

    # -- what the app's side (server.ws_asgi) asks -------------------------------------------
    def denying(self) -> None:
        """The app answers the handshake with its own HTTP response (server.ws_reply)."""
        self.state = WSState.DENYING

    def opened(self) -> None:
        """The 101 is out: frames flow both ways from now on."""
        self.state = WSState.OPEN
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

    def closed(self) -> None:
        """The WebSocket is over: the app hears it now (a send waiting for the client to
        read raises), the socket closes once flushed, or after send_timeout if it never is."""
        self.state = WSState.CLOSED
        self.inbox.end(self.close_code, self.close_reason)
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
            waited = self.stalled.waited(True, now) if self.flow.write_paused else None
            if waited is not None and waited >= self.ctx.settings.send_timeout_s:
                self.abort()
            elif self.ctx.draining:
                self.shutdown()
            elif self.inbox.full():
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
        """Drop the connection: the graceful deadline passed, or the client stopped reading."""
        self.state = WSState.CLOSED
        self.inbox.end(self.close_code, self.close_reason)
        self.transport.abort()

    def reuse_mark(self) -> None:
        """A WebSocket never gives way to a new connection (server.capacity)."""

    close_idle = abort
