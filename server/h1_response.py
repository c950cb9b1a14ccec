"""The response half of an HTTP/1.1 connection: how each response is framed, and its writes.

Rules: each HTTP/1.1 connection has one H1Response, the writer of its cycles
(server.cycle.ResponseWriter); its RequestPipeline (server.h1_pipeline) reads `keep_alive`
once a response is complete, to go on or close. The app's fields are checked by
server.http_fields and the HTTP/1.1 bytes encoded by server.h1_writer; here the framing is
chosen (Content-Length, chunked, close-delimited, none) and the bytes go out: a complete
small response in one write, the head with the first body bytes, and the body messages of a
streamed response in one write per step of the app (server.write_batch).
Hot path: framings are compared against module aliases, not Enum attributes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable

from serve.server import h1_writer as w
from serve.server import http_fields as hf
from serve.server.context import WorkerContext
from serve.server.cycle import Cycle
from serve.server.request_body import BodyState
from serve.server.write_batch import WriteBatch

logger = logging.getLogger("serve")
# Bodies up to this size are joined to the response head; larger ones go out beside it in
# one writev. A join of 64 KiB bodies cost 15 MiB of worker RSS at 256 connections.
JOIN_LIMIT = 16 * 1024


class Framing(enum.Enum):
    NONE = 1  # HEAD, 1xx, 204, 304: no body whatever the app sends
    LENGTH = 2  # Content-Length
    CHUNKED = 3
    CLOSE = 4  # HTTP/1.0 without a length: the body ends when the connection does


_NONE, _LENGTH, _CHUNKED, _CLOSE = Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE
_RECEIVING = BodyState.RECEIVING
_STATUS_LINES = w.STATUS_LINES
_NO_BODY_STATUSES = hf.NO_BODY_STATUSES


class H1Response:
    __slots__ = ("batch", "ctx", "framing", "keep_alive", "remaining", "transport")

    def __init__(self, ctx: WorkerContext, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self.ctx = ctx
        self.transport = transport
        self.batch = batch
        # Whether the connection outlives the response being written: what the request
        # allows (cycle.keep_alive), unless the response or the worker decide otherwise.
        self.keep_alive = True
        # Framing of the response in progress; bytes still owed under Content-Length.
        self.framing = _NONE
        self.remaining = 0

    def start_response(
        self,
        cycle: Cycle,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        more: bool,
    ) -> None:
        line = _STATUS_LINES.get(status) or w.status_line(status)
        block, declared, close = hf.response_headers(headers)
        # An app that answers before reading the whole body leaves bytes that cannot be
        # framed reliably from here: the connection ends with this response.
        keep_alive = (
            cycle.keep_alive
            and not close
            and cycle.body.state is not _RECEIVING
            and not self.ctx.draining
        )
        if declared is None or cycle.head_request or status in _NO_BODY_STATUSES:
            framing, extra, keep_alive = _framing(
                cycle, status, declared, body, more=more, keep_alive=keep_alive
            )
            # A length the server declares is the body's own: nothing more is owed.
            remaining = 0
        else:
            framing, extra = _LENGTH, b""
            remaining = hf.first_part(declared, len(body))
        if not keep_alive:
            extra += w.CONNECTION_CLOSE
        elif cycle.scope["http_version"] == "1.0":
            extra += w.CONNECTION_KEEP_ALIVE
        self.framing = framing
        self.keep_alive = keep_alive
        if framing is _LENGTH:
            self.remaining = remaining
            cycle.bytes_sent = len(body)
        elif framing is _NONE:
            body = b""
        elif body:
            cycle.bytes_sent = len(body)
            if framing is _CHUNKED:
                body = w.chunk(body)
        if len(body) <= JOIN_LIMIT:
            # One write, one buffer: head and the first body bytes go out together, and with
            # the next ones when the app streams more of the body in the same step.
            head = b"".join((line, block, extra, self.ctx.date_block, b"\r\n", body))
            if more:
                self.batch.add(head)
            else:
                self.transport.write(head)
        else:
            # Copying a large body just to join it to the head costs more than a writev.
            head = b"".join((line, block, extra, self.ctx.date_block, b"\r\n"))
            self.transport.writelines((head, body))

    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
        framing = self.framing
        if framing is _NONE:
            body = b""
        elif body:
            if framing is _LENGTH:
                try:
                    self.remaining = hf.next_part(self.remaining, len(body))
                except RuntimeError:
                    self.keep_alive = False
                    raise
            cycle.bytes_sent += len(body)
            if framing is _CHUNKED:
                body = w.chunk(body)
        if more:
            if body:
                self.batch.add(body)
            return
        end = b""
        if framing is _CHUNKED:
            end = w.CHUNKED_END
        elif framing is _LENGTH and self.remaining and not hf.ended_whole(self.remaining):
            self.keep_alive = False
        self.batch.finish(body, end)

    def send_continue(self) -> None:
        self.transport.write(w.CONTINUE_100)


def _framing(
    cycle: Cycle, status: int, declared: int | None, body: bytes, *, more: bool, keep_alive: bool
) -> tuple[Framing, bytes, bool]:
    """Framing of a response without a body, or whose length the app did not declare.

    Returns (framing, extra head bytes, keep_alive).
    """
    if cycle.head_request or status in _NO_BODY_STATUSES:
        # A HEAD response announces the length the GET would have, when it is known.
        extra = w.content_length(len(body)) if declared is None and body and not more else b""
        return _NONE, extra, keep_alive
    if not more:
        return _LENGTH, w.content_length(len(body)), keep_alive
    if cycle.scope["http_version"] == "1.1":
        return _CHUNKED, w.TRANSFER_CHUNKED, keep_alive
    return _CLOSE, b"", False
