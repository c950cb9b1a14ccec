"""Sans-IO HTTP/1.1 request framing: bytes in, request events out.

Rules:
- No IO, no clock, no app: feed() and feed_eof() return events and the protocol acts on them.
- This module finds every message boundary itself (the empty line that ends a head here or
  in server.h1_head, the end of a body, counted or chunked, in server.h1_body) and hands
  llhttp exactly one message at a time. llhttp, strict (its leniencies are never enabled),
  validates the syntax of those bytes; h1_validate checks what they mean. Size limits apply
  before bytes reach llhttp, so however slowly a head arrives (server.h1_head), no more than
  max_header_size bytes of it are ever held.
- httptools callbacks only append to lists and set flags; they never raise.
- A whole head of at most 1 KiB that parsed to a complete, bodiless, non-upgrade request is
  remembered by its exact bytes (KNOWN_HEADS, worker-wide, server.memo) with what it parsed
  to; the same bytes again skip llhttp and the field checks. Only a parse that succeeded is
  stored, and a parser whose limits it exceeds parses it in full and refuses it.
- A rejected head emits no RequestHead. After a ParseFailed the parser is dead. After a
  request that does not keep the connection alive, later bytes are ignored: the server must
  not process further requests on that connection (RFC 9112 §9.6).
- With `max_heads`, a feed stops before the request head that would exceed it and holds the
  rest of its bytes (`held`); feed(b"") goes on from there. The caller bounds what one
  read of pipelined requests costs it, however many requests the read carries.
- A bodiless request asking to upgrade to one of `upgrades` (a GET for WebSocket, RFC 6455;
  any method for h2c, RFC 7540 §3.2) ends HTTP/1.1 on the connection: the parser emits its
  RequestHead and stops; the bytes after the head belong to the new protocol (RFC 9110 §7.8)
  and are handed over by take_remaining(). Other upgrades are plain HTTP.
"""

from __future__ import annotations

from enum import Enum

from httptools import (
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from serve.server.errors import RequestRejected
from serve.server.events import BodyChunk, Event, MessageEnd, ParseFailed, RequestHead
from serve.server.h1_body import BodyFraming, reframed
from serve.server.h1_head import PartialHead
from serve.server.h1_validate import (
    SEEN_REQUEST_LINES,
    RequestLine,
    check_fields,
    request_line,
)
from serve.server.memo import AdaptiveMemo
from serve.server.settings import Limits

_HEAD_END = b"\r\n\r\n"
_END = MessageEnd()
_NO_EVENTS: list[Event] = []

# What a complete, bodiless, non-upgrade head parsed to: (request line length, field count,
# request line, fields, keep_alive, expect_continue). The two lengths let a parser with
# lower limits refuse it the slow way.
KnownHead = tuple[int, int, RequestLine, tuple[tuple[bytes, bytes], ...], bool, bool]
# Heads seen whole, by their exact bytes: a hit skips llhttp and check_fields, about a fifth
# of a keep-alive request's instructions. A hit follows a complete message (the parser is
# in _HEAD), so llhttp is between messages and stays right without seeing the bytes.
KNOWN_HEADS: AdaptiveMemo[bytes, KnownHead] = AdaptiveMemo()
# Longer heads carry cookies or tokens that rarely repeat: never hashed.
_MEMO_HEAD = 1024


class _State(Enum):
    HEAD = "head"  # waiting for (the rest of) a request head
    BODY = "body"  # inside a body, framed by server.h1_body
    CLOSED = "closed"  # the last request closes the connection; later bytes are ignored
    UPGRADED = "upgraded"  # the connection switched protocols; later bytes are not HTTP/1.1
    DEAD = "dead"  # a ParseFailed was emitted


# Module aliases: reading a member off an Enum class goes through EnumType.__getattr__ on 3.11.
_HEAD, _BODY = _State.HEAD, _State.BODY
_CLOSED, _DEAD = _State.CLOSED, _State.DEAD


def _replayed(known: KnownHead) -> RequestHead:
    """A head seen before, as a new event with its own field list (apps may change theirs)."""
    _, _, (method, target, version, path, raw_path, query, _), fields, keep_alive, expect = known
    return RequestHead(
        method, target, path, raw_path, query, version, list(fields), keep_alive, expect, None,
        False,
    )  # fmt: skip


def _rejection(exc: HttpParserError) -> RequestRejected:
    if isinstance(exc, HttpParserInvalidMethodError):
        # parse_request_line saw a valid token: it is a method we do not implement.
        return RequestRejected(501, "method not implemented")
    return RequestRejected(400, str(exc))


class _Reports:
    """What llhttp reports while it parses one message. Its own object, held by llhttp but
    not holding the parser, so no cycle keeps a closed connection's parser alive."""

    __slots__ = ("events", "head_done", "headers", "message_done")

    def __init__(self) -> None:
        self.events: list[Event] = _NO_EVENTS
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.message_done = False

    # httptools callbacks: append and flag, never raise.
    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value but keeps the whitespace after it.
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.events.append(BodyChunk(body))

    def on_message_complete(self) -> None:
        self.message_done = True


class H1Parser:
    """Request framing for one connection: feed it bytes, get events back.

    Events come as (RequestHead BodyChunk* MessageEnd)*, possibly ended by one ParseFailed.
    Pipelined requests in one feed give several such sequences.
    """

    def __init__(
        self,
        limits: Limits,
        upgrades: frozenset[bytes] = frozenset(),
        max_heads: int | None = None,
    ) -> None:
        self._max_line = limits.max_request_line
        self._max_head = limits.max_header_size
        self._max_headers = limits.max_headers
        self._seen = _Reports()
        self._parser = HttpRequestParser(self._seen)
        self._body = BodyFraming(self._parser, limits)
        self._state = _HEAD
        self._partial = PartialHead(limits.max_request_line, limits.max_header_size)
        # The partial head's bytes, read on the hot path without a call.
        self._head_buf = self._partial.buffer
        self._keep_alive = True
        self._upgrades = upgrades
        self._rest = b""
        # Request heads a feed may emit, and `held`: the unparsed rest of a feed that reached
        # it (the connection reads it on the hot path, so an attribute, not a property).
        self._max_heads = max_heads or 2**62
        self._heads = 0
        self.held = b""
        self._held_at = 0

    @property
    def buffered_request_head(self) -> bool:
        """True while bytes of an incomplete request head are held."""
        return bool(self._head_buf)

    @property
    def upgraded(self) -> bool:
        """True once a request switched the connection to another protocol."""
        return self._state is _State.UPGRADED

    def take_remaining(self) -> bytes:
        """The bytes received after the upgrade request's head, for the new protocol."""
        rest, self._rest = self._rest, b""
        return rest

    def feed(self, data: bytes) -> list[Event]:
        """Parse as much as possible and return the events, in order.

        After a ParseFailed the parser is dead: it returns nothing more, from this feed or
        any later one.
        """
        events: list[Event] = []
        self._seen.events = events
        pos = 0
        if self.held:
            # Resumed where the last feed stopped, without copying what is left.
            held, pos, self.held = self.held, self._held_at, b""
            data, pos = (held, pos) if not data else (held[pos:] + data, 0)
        self._heads = 0
        n = len(data)
        try:
            while pos < n:
                state = self._state
                if state is _HEAD:
                    if self._heads >= self._max_heads and not self._head_buf:
                        self.held, self._held_at = data, pos
                        break
                    # Inline, the common case: a whole head, within the limit, where the
                    # data starts (a find without an end bound parses fewer arguments).
                    end = -1 if self._head_buf or data[pos] == 0x0D else data.find(_HEAD_END, pos)
                    if end < 0 or end + 4 > pos + self._max_head:
                        # A head in pieces, or after empty lines (server.h1_head).
                        head, pos = self._partial.add(data, pos)
                        if head is not None:
                            self._start_message(head)
                    else:
                        end += 4
                        self._start_message(data if end == n and not pos else data[pos:end])
                        pos = end
                elif state is _BODY:
                    pos, done = self._body.feed(data, pos)
                    if done:
                        self._end_message()
                else:
                    if state is _State.UPGRADED:
                        self._rest += data[pos:]
                    break
        except RequestRejected as exc:
            events.append(self._fail(exc))
        # Not kept past the feed: an idle connection would hold its last body chunk.
        self._seen.events = _NO_EVENTS
        return events

    def feed_eof(self) -> list[Event]:
        """The client half-closed: a partly received request fails with 400, else []."""
        state = self._state
        if state is _DEAD or state is _CLOSED or state is _State.UPGRADED:
            return []
        if state is _HEAD and not self._head_buf:
            return []
        return [self._fail(RequestRejected(400, "connection closed inside a request"))]

    # -- framing -------------------------------------------------------------------------------
    def _start_message(self, head: bytes) -> None:
        memo: AdaptiveMemo[bytes, KnownHead] | None = None
        if KNOWN_HEADS.paused:
            KNOWN_HEADS.paused -= 1
        elif len(head) <= _MEMO_HEAD:
            memo = KNOWN_HEADS
            known = memo.get(head)
            if known and known[0] <= self._max_line and known[1] <= self._max_headers:
                self._replay(known)
                return
        line = head.partition(b"\r\n")[0]
        if len(line) > self._max_line:
            raise RequestRejected(414, "request line too long")
        parsed = SEEN_REQUEST_LINES.get(line) or request_line(line)
        method, target, version, path, raw_path, query, has_authority = parsed
        headers: list[tuple[bytes, bytes]] = []
        seen = self._seen
        seen.headers = headers
        seen.head_done = seen.message_done = False
        upgraded = False
        try:
            self._parser.feed_data(head)
        except HttpParserUpgrade:
            upgraded = True
        except HttpParserError as exc:
            raise _rejection(exc) from None
        if not seen.head_done:
            raise RequestRejected(400, "malformed request head")
        if len(headers) > self._max_headers:
            raise RequestRejected(431, "too many header fields")
        length, chunked, keep_alive, expect, upgrade = check_fields(
            headers, version == "1.1", has_authority
        )
        if length:
            self._body.check_length(length)
        has_body = chunked or length > 0
        self._heads += 1
        seen.events.append(
            RequestHead(
                method, target, path, raw_path, query, version, headers, keep_alive, expect,
                upgrade, has_body,
            )
        )  # fmt: skip
        self._keep_alive = keep_alive
        if upgrade in self._upgrades and (method == "GET" or upgrade == b"h2c") and not has_body:
            self._state = _State.UPGRADED
            return
        if upgraded:
            self._reframe_body(length, chunked)
        if has_body:
            self._begin_body(length, chunked)
        elif seen.message_done:
            seen.events.append(_END)
            self._state = _HEAD if keep_alive else _CLOSED
            if memo is not None and not upgraded and upgrade is None:
                known = (len(line), len(headers), parsed, tuple(headers), keep_alive, expect)
                memo.put(head, known)
        else:
            self._end_message()  # refuses the message

    def _replay(self, known: KnownHead) -> None:
        self._heads += 1
        self._seen.events += (_replayed(known), _END)
        self._keep_alive = keep_alive = known[4]
        self._state = _HEAD if keep_alive else _CLOSED

    def _begin_body(self, length: int, chunked: bool) -> None:
        if self._seen.message_done:
            # llhttp saw no body where the fields announce one: never guess which is right.
            raise RequestRejected(400, "message framing mismatch")
        if chunked:
            self._seen.headers = []  # trailer fields land here and are dropped with the list
        self._body.start(self._parser, length, chunked)
        self._state = _BODY

    def _reframe_body(self, length: int, chunked: bool) -> None:
        if chunked or length:
            self._seen.headers = []  # the fields of the framing head told to llhttp land here
            self._seen.message_done = False
        self._parser = reframed(self._seen, length, chunked)

    def _end_message(self) -> None:
        if not self._seen.message_done:
            # Our framing and llhttp's disagree on where the message ends: never guess.
            raise RequestRejected(400, "message framing mismatch")
        self._seen.events.append(_END)
        self._state = _HEAD if self._keep_alive else _CLOSED

    def _fail(self, exc: RequestRejected) -> ParseFailed:
        self._state = _DEAD
        self._head_buf.clear()
        return ParseFailed(exc.status, exc.reason)
