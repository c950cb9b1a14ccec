"""The access log: one line per response, rendered once from the request's fields.

Rules:
- With the built-in log setup, a line is rendered here, exactly as the "serve" handler's
  formatter would render it (text or JSON, same fields, same escaping; a test holds the two
  equal), and appended to the worker's AccessBuffer (server.access_buffer): no LogRecord,
  no lock, no flush per request. With `log_config` the user owns the handlers, so lines go
  through logging as records on "serve.access" instead, their fields attached for the JSON
  formatter.
- Text from the network goes through escape_control() before it is rendered.
- A response serve wrote where no request head was read (a malformed or oversized head, a
  connection refused over a limit) has a line too: "-" for the request line, method and
  path (nginx's "-" for an empty request), and a duration of 0.
- A line is on the path of every request, so it is built from parts made as rarely as
  they change: a client address is escaped and JSON-quoted once per distinct value (a
  keep-alive connection's requests share its address), a request's method, request line
  and path once per distinct path, query, method and version (the routes in use), the
  time of day once per second and a JSON line's head once per millisecond. Everything a
  line shows but its time and duration is rendered once per distinct client, request,
  status and bytes (a keep-alive client asking one route for the same answer) and
  remembered in an AdaptiveMemo (server.memo); a line then joins its time, those pieces
  and its duration. While lines mostly differ the memo pauses, and a line renders whole
  through the function its format was compiled to (server.access_format): one f-string,
  for JSON too, whose message is rendered already quoted for JSON from quoted parts. A
  request line or a line over 1 KiB is never remembered, so the memos stay small whatever
  targets clients send.
- A text line's time is the second it was rendered in, read from the clock once a second: a
  timer set for the next second's start marks the rendered time stale, and the next line
  renders it anew (a timer fired early only renders the same second again). A line rendered
  in the loop turn that crosses a second may show the second before, as nginx's cached time
  does; per request the clock is not read at all.
- A JSON line gives duration_ms to the microsecond ("%.3f"): the shortest repr() of the
  float measured cost a tenth of the whole line, and its digits past the microsecond were
  noise. The fields handed to logging carry the same value, rounded alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from serve.server.access_buffer import AccessBuffer
from serve.server.access_format import FIELDS, compile_format, compile_json_line, json_quoted
from serve.server.logs import (
    ACCESS_FIELDS_ATTR,
    ACCESS_LOGGER_NAME,
    TEXT_DATE_FORMAT,
    escape_control,
    log_stream_fd,
)
from serve.server.memo import AdaptiveMemo
from serve.server.settings import WorkerSettings

# Distinct clients and requests remembered at most; then a memo starts again.
_KEPT = 4096
# Distinct lines remembered (without their time and duration): one per keep-alive client,
# route and answer in use.
_LINES_KEPT = 1024
# A request line or a line longer than this is rendered every time, never remembered: a
# client sending long targets that never repeat (8 KiB over HTTP/1.1, 64 KiB over HTTP/2)
# would otherwise fill the memos with megabytes of its text.
_REMEMBERED_CHARS = 1024
# A client as text lines show it (escaped), and as the content of a JSON string.
Parts = tuple[str, str]
_NO_CLIENT: Parts = ("-", "-")
# A request's method, request line and path as text lines show them, then the same as
# JSON string contents.
Request = tuple[str, str, str, str, str, str]
# A request's path, query string, method and version; all None for a response serve wrote
# where no request head was read (no scope has None in its fields).
Target = tuple[str, bytes, str, str]
RequestKey = Target | tuple[None, None, None, None]
_NO_HEAD_KEY: RequestKey = (None, None, None, None)
_NO_HEAD: Request = ("-", "-", "-", "-", "-", "-")
# A line's client, request target (as Target), status and bytes.
LineKey = tuple[tuple[str, int] | None, str | None, bytes | None, str | None, str | None, int, int]
_NO_HEAD_SCOPE = {"path": None, "query_string": None, "method": None, "http_version": None}


class AccessLogger:
    """Renders one access line per response, into an AccessBuffer or through logging."""

    def __init__(self, fmt: str, json: bool, out: AccessBuffer | None = None) -> None:
        _check_format(fmt)
        self._json = json
        self._out = out
        self._logger = logging.getLogger(ACCESS_LOGGER_NAME)
        self._clients: dict[tuple[str, int] | None, Parts] = {None: _NO_CLIENT}
        self._requests: dict[RequestKey, Request] = {_NO_HEAD_KEY: _NO_HEAD}
        # The message alone (for logging), and the line from its message on: a text line's
        # with a newline after, or a JSON line's, the access fields after it.
        self._message = compile_format(fmt, "").whole
        line = compile_json_line(fmt) if json else compile_format(fmt, "\n")
        self._whole, self._fixed, self._timed = line
        # What a line shows besides its time and duration (server.access_format), by the fields
        # that decide it.
        self._lines: AdaptiveMemo[LineKey, tuple[Any, ...]] = AdaptiveMemo(_LINES_KEPT)
        pid = os.getpid()
        self._text_head = f" [{pid}] INFO serve.access: "
        # What follows the time in a JSON line, up to the message: JsonFormatter's key order.
        self._json_head = (
            f'+00:00", "level": "INFO", "pid": {pid}, "logger": "serve.access", "msg": "'
        )
        # The time rendered: a text line's time and head ("" when stale); a JSON line's
        # second with its start, and its millisecond with the line's head.
        self._day = ""
        self._json_second = -1
        self._json_day = ""
        self._millisecond = -1
        self._head = ""

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    # Positional on purpose: called once per response, it should not cost a record object.
    def log_scope(
        self, scope: Mapping[str, Any], status: int, nbytes: int, duration_s: float
    ) -> None:
        """One line for the request an ASGI `scope` describes."""
        out = self._out
        if out is None:
            self._through_logging(scope, status, nbytes, duration_s)
            return
        if not self._json:
            prefix = self._day or self._text_day()
        else:
            millisecond = time.time_ns() // 1_000_000
            prefix = self._head if millisecond == self._millisecond else self._json_at(millisecond)
        duration_ms = duration_s * 1000.0
        lines = self._lines
        if lines.paused:
            lines.paused -= 1
            line = self._whole(prefix, *self._arguments(scope, status, nbytes, duration_ms))
        else:
            # A websocket scope has no method: its handshake was a GET.
            key = (scope["client"], scope["path"], scope["query_string"],
                   scope.get("method", "GET"), scope["http_version"], status, nbytes)  # fmt: skip
            fixed = lines.get(key)
            if fixed is not None:
                line = self._timed(prefix, duration_ms, fixed)
            else:
                fixed = self._fixed(*self._arguments(scope, status, nbytes, 0.0))
                line = self._timed(prefix, duration_ms, fixed)
                if len(line) <= _REMEMBERED_CHARS:
                    lines.put(key, fixed)
        # AccessBuffer.append, inline: a method call per line was 3% of a text line.
        out.lines.append(line)
        out.room -= len(line)
        if out.room <= 0:
            out.appended()

    def log_without_head(self, client: tuple[str, int] | None, status: int, nbytes: int) -> None:
        """One line for a response serve wrote where no request head was read."""
        self.log_scope(_NO_HEAD_SCOPE | {"client": client}, status, nbytes, 0.0)

    def _arguments(
        self, scope: Mapping[str, Any], status: int, nbytes: int, duration_ms: float
    ) -> tuple[Any, ...]:
        """The compiled formats' arguments (ARGUMENTS) for a line."""
        client = scope["client"]
        client_text, client_q = self._clients.get(client) or self._learn_client(client)
        key = (scope["path"], scope["query_string"], scope.get("method", "GET"),
               scope["http_version"])  # fmt: skip
        method, request_line, path, method_q, request_line_q, path_q = self._requests.get(
            key
        ) or self._learn_request(key)
        return (
            client_text, request_line, status, nbytes, duration_ms, method, path,
            client_q, request_line_q, method_q, path_q,
        )  # fmt: skip

    def _through_logging(
        self, scope: Mapping[str, Any], status: int, nbytes: int, duration_s: float
    ) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            arguments = self._arguments(scope, status, nbytes, duration_s * 1000.0)
            extra = None
            if self._json:
                fields = dict(zip(FIELDS, arguments, strict=False))  # QUOTED left out
                fields["duration_ms"] = round(fields["duration_ms"], 3)
                extra = {ACCESS_FIELDS_ATTR: fields}
            self._logger.info(self._message("", *arguments), extra=extra)

    def _learn_request(self, key: Target) -> Request:
        if len(self._requests) >= _KEPT:
            self._requests = {_NO_HEAD_KEY: _NO_HEAD}
        path, query, method, version = key
        target = path + "?" + query.decode("latin-1") if query else path
        method = escape_control(method)
        target = escape_control(target)
        request_line = f"{method} {target} HTTP/{escape_control(version)}"
        path = target.partition("?")[0]
        request = (
            method, request_line, path,
            json_quoted(method), json_quoted(request_line), json_quoted(path),
        )  # fmt: skip
        if len(request_line) <= _REMEMBERED_CHARS:
            self._requests[key] = request
        return request

    def _learn_client(self, client: tuple[str, int] | None) -> Parts:
        if client is None:
            return _NO_CLIENT
        if len(self._clients) > _KEPT:
            self._clients = {None: _NO_CLIENT}
        text = escape_control(f"{client[0]}:{client[1]}")
        parts = self._clients[client] = (text, json_quoted(text))
        return parts

    def _text_day(self) -> str:
        """The time and head of a text line, up to its message, until the next second."""
        now = time.time()
        second = int(now)
        self._day = time.strftime(TEXT_DATE_FORMAT, time.localtime(second)) + self._text_head
        asyncio.get_running_loop().call_later(second + 1 - now, self._day_passed)
        return self._day

    def _day_passed(self) -> None:
        self._day = ""

    def _json_at(self, millisecond: int) -> str:
        second = millisecond // 1000
        if second != self._json_second:
            moment = datetime.fromtimestamp(second, tz=timezone.utc)
            self._json_second = second
            self._json_day = moment.strftime('{"ts": "%Y-%m-%dT%H:%M:%S.')
        self._millisecond = millisecond
        # The last three digits are the millisecond's, zeros kept: cheaper than "%03d".
        self._head = self._json_day + str(millisecond)[-3:] + self._json_head
        return self._head


def access_logger(settings: WorkerSettings) -> AccessLogger | None:
    """The worker's access logger, buffered unless log_config owns the handlers; None
    when the access log is off (then no request does any logging work)."""
    if not settings.access_log:
        return None
    fd_of = log_stream_fd()
    out = None
    if fd_of is not None:
        out = AccessBuffer(
            fd_of, settings.access_log_buffer_size, settings.access_log_flush_interval_s
        )
    return AccessLogger(settings.access_log_format, settings.log_format == "json", out)


def _check_format(fmt: str) -> None:
    """Fail at worker start, not on every request, when the format names an unknown field."""
    sample = {
        "client": "127.0.0.1:1",
        "request_line": "GET / HTTP/1.1",
        "status": 200,
        "bytes": 0,
        "duration_ms": 0.0,
        "method": "GET",
        "path": "/",
    }
    try:
        fmt % sample
    except (KeyError, ValueError, TypeError) as exc:
        fields = ", ".join(sample)
        raise ValueError(
            f"access_log_format {fmt!r} is invalid ({type(exc).__name__}: {exc}); fields: {fields}"
        ) from None
