"""The access log: one line per response, rendered once and written in batches.

Rules:
- With the built-in log setup, a line is rendered here, exactly as the "serve" handler's
  formatter would render it (text or JSON, same fields, same escaping; a test holds the two
  equal), and appended to the worker's AccessBuffer: no LogRecord, no lock, no flush per
  request. With `log_config` the user owns the handlers, so lines go through logging as
  records on "serve.access" instead, their fields attached for the JSON formatter.
- The buffer is written when it holds `size` bytes or `interval_s` after its oldest line
  (nginx's `access_log ... buffer= flush=`), and always when the worker drains, before it
  exits, before a USR1 reopen (its lines belong to the rotated file) and on the master's
  SIGABRT for a blocked loop, if Python code still runs then. A SIGKILL loses what the
  buffer holds: at most `size` bytes, or `interval_s` seconds of lines.
- Every write(2) holds whole lines, so several workers can share one destination. An
  O_APPEND file takes each write whole. On a pipe or socket (stderr under systemd or
  docker) only writes up to PIPE_BUF bytes are atomic, so a flush goes out in pieces of at
  most PIPE_BUF bytes cut at line ends; a single longer line goes alone in one write.
- Text from the network goes through escape_control() before it is rendered.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import re
import select
import signal
import stat
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import Any

from serve.server.logs import (
    ACCESS_FIELDS_ATTR,
    ACCESS_LOGGER_NAME,
    TEXT_DATE_FORMAT,
    escape_control,
    log_stream_fd,
)
from serve.server.settings import WorkerSettings

logger = logging.getLogger("serve")

# The start of a named conversion in the access format ("%(status)"), or a literal "%%".
_FIELD = re.compile(r"%(?:\((\w+)\)|%)")
# Client addresses remembered at most; then the memo starts again.
_CLIENTS_KEPT = 4096
# Writes up to this size to a pipe are atomic (POSIX requires at least 512; Linux gives 4096).
PIPE_BUF = select.PIPE_BUF


def line_pieces(data: bytes, limit: int) -> list[tuple[int, int]]:
    """(start, end) of each write for `data` (whole lines, each ending in a newline): at
    most `limit` bytes cut at a line end, or one line alone where it is longer."""
    pieces: list[tuple[int, int]] = []
    start, total = 0, len(data)
    while start < total:
        end = total if total - start <= limit else data.rfind(b"\n", start, start + limit) + 1
        if end <= start:
            end = data.find(b"\n", start + limit) + 1 or total
        pieces.append((start, end))
        start = end
    return pieces


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            # A descriptor someone made non-blocking: wait as a blocking write would.
            select.select([], [fd], [])
            continue
        data = data[written:]


class AccessBuffer:
    """Whole lines gathered in memory and written to the log's descriptor in few writes."""

    def __init__(self, fd_of: Callable[[], int], size: int, interval_s: float) -> None:
        # Asked at each flush: a USR1 reopen gives the log file a new descriptor.
        self._fd_of = fd_of
        self._size = size
        self._interval_s = interval_s
        self._lines: list[str] = []
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def append(self, line: str) -> None:
        self._lines.append(line)
        self._pending += len(line)
        if self._pending >= self._size:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        # As the log streams do: a lone surrogate from a path must not cost the whole batch.
        data = "".join(self._lines).encode("utf-8", "backslashreplace")
        self._lines.clear()
        self._pending = 0
        try:
            fd = self._fd_of()
            limit = len(data)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                limit = PIPE_BUF
            view = memoryview(data)
            for start, end in line_pieces(data, limit):
                _write_all(fd, view[start:end])
        except (OSError, ValueError) as exc:
            # ValueError: the handler's stream was closed under us.
            self._report(exc)
        else:
            self._failed = False

    def _report(self, exc: Exception) -> None:
        # Once per run of failures (a full disk, a closed pipe): not once per batch.
        if not self._failed:
            self._failed = True
            logger.error("cannot write the access log, lines lost: %s", exc)


class AccessLogger:
    """Renders one access line per response, into an AccessBuffer or through logging."""

    def __init__(self, fmt: str, json: bool, out: AccessBuffer | None = None) -> None:
        _check_format(fmt)
        self._fmt = fmt
        self._json = json
        self._out = out
        self._logger = logging.getLogger(ACCESS_LOGGER_NAME)
        self._pid = os.getpid()
        # Clients rendered so far: a keep-alive connection's requests share its address.
        self._clients: dict[tuple[str, int] | None, str] = {None: "-"}
        # The format with positional conversions, and what picks its values in order:
        # cheaper than formatting with the mapping.
        names = [name for name in _FIELD.findall(fmt) if name]
        self._positional = _FIELD.sub(lambda m: "%" if m.group(1) else "%%", fmt)
        self._values: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            operator.itemgetter(*names) if len(names) > 1 else lambda f: tuple(f[n] for n in names)
        )
        # The rendered time of day, kept for the second it names.
        self._second = -1
        self._stamp = ""
        # What follows the time in a JSON line, up to the message: JsonFormatter's key order.
        self._json_head = (
            f'+00:00", "level": "INFO", "pid": {self._pid}, "logger": "serve.access", "msg": '
        )

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    # Positional on purpose: called once per response, it should not cost a record object.
    def log_scope(
        self, scope: Mapping[str, Any], status: int, nbytes: int, duration_s: float
    ) -> None:
        """One line for the request an ASGI `scope` describes."""
        target = scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        self.log(
            scope["client"],
            # A websocket scope has no method: its handshake was a GET.
            scope.get("method", "GET"),
            target,
            scope["http_version"],
            status,
            nbytes,
            duration_s,
        )

    def log(  # noqa: PLR0917
        self,
        client: tuple[str, int] | None,
        method: str,
        target: str,
        http_version: str,
        status: int,
        nbytes: int,
        duration_s: float,
    ) -> None:
        method = escape_control(method)
        target = escape_control(target)
        client_text = self._clients.get(client)
        if client_text is None:
            client_text = self._client_text(client)
        fields: dict[str, Any] = {
            "client": client_text,
            "request_line": f"{method} {target} HTTP/{escape_control(http_version)}",
            "status": status,
            "bytes": nbytes,
            "duration_ms": duration_s * 1000.0,
            "method": method,
            "path": target.partition("?")[0],
        }
        message = self._positional % self._values(fields)
        out = self._out
        if out is None:
            if self._logger.isEnabledFor(logging.INFO):
                extra = {ACCESS_FIELDS_ATTR: fields} if self._json else None
                self._logger.info(message, extra=extra)
        elif self._json:
            out.append(self._json_line(message, fields))
        else:
            out.append(self._text_line(message))

    def _client_text(self, client: tuple[str, int] | None) -> str:
        if client is None:
            return "-"
        if len(self._clients) > _CLIENTS_KEPT:
            self._clients = {None: "-"}
        text = self._clients[client] = escape_control(f"{client[0]}:{client[1]}")
        return text

    def _text_line(self, message: str) -> str:
        second = int(time.time())
        if second != self._second:
            day = time.strftime(TEXT_DATE_FORMAT, time.localtime(second))
            self._second, self._stamp = second, f"{day} [{self._pid}] INFO serve.access: "
        return self._stamp + message + "\n"

    def _json_line(self, message: str, fields: dict[str, Any]) -> str:
        second, millis = divmod(int(time.time() * 1000), 1000)
        if second != self._second:
            moment = datetime.fromtimestamp(second, tz=timezone.utc)
            self._second, self._stamp = second, moment.strftime('{"ts": "%Y-%m-%dT%H:%M:%S')
        head = self._json_head
        return (
            f"{self._stamp}.{millis:03d}{head}{encode_basestring(message)}"
            f', "client": {encode_basestring(fields["client"])}'
            f', "request_line": {encode_basestring(fields["request_line"])}'
            f', "status": {fields["status"]}, "bytes": {fields["bytes"]}'
            f', "duration_ms": {fields["duration_ms"]!r}'
            f', "method": {encode_basestring(fields["method"])}'
            f', "path": {encode_basestring(fields["path"])}}}\n'
        )


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


def flush_on_abort(flush: Callable[[], None]) -> None:
    """On SIGABRT (the master's answer to a blocked loop), write the buffered lines, then die
    of SIGABRT as before. Install before faulthandler.enable(): faulthandler dumps the
    stacks first and then calls this handler, which Python runs as soon as the blocked code
    lets it (a sleep or a Python loop does; a blocked C call does not, and then the
    master's SIGKILL ends the worker with its lines)."""

    def on_abort(signum: int, frame: object) -> None:
        flush()
        os.abort()

    signal.signal(signal.SIGABRT, on_abort)


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
