"""Logging for master and workers: one handler on stderr or a log file, text or JSON lines.

Rules:
- Two loggers: "serve" (master and worker messages) and its child "serve.access" (one
  line per request). Every line carries the pid: operators grep a worker's story by it.
- configure_logging() is idempotent: a worker calls it again after fork and must not end
  up with the master's handler twice. "serve" does not propagate, so an app that
  configures the root logger does not print our lines a second time.
- "serve.access" stays at INFO whatever the level: the access_log switch decides whether
  access lines exist (the worker builds no AccessLogger when it is off), not log_level.
  Workers render their access lines themselves (server.accesslog) and write them in
  batches (server.access_buffer) to the descriptor log_stream_fd() names, the one our
  handler writes to.
- A log file is opened in append mode, line-buffered, so master and workers append whole
  lines to the same file. reopen_log_files() (USR1, after logrotate moved the file) opens
  the path again before closing the old stream: a failed reopen keeps logging to the old
  file rather than losing lines.
- With a log file, file descriptor 2 points at it too (dup2), in the master and in every
  worker, and again after each reopen: faulthandler's stack dumps, print(file=sys.stderr)
  and C libraries' messages land in the same file as the log lines. Going back to stderr
  (a reload without log_file) restores the original descriptor 2.
- With JSON lines, the root logger gets the same handler at the same level, so the app's
  own records are JSON objects too (one per record, never a raw multi-line text among
  them); with text lines the app's logging is its own business.
- A `log_config` mapping (logging.config.dictConfig) replaces all of the above: our handler
  goes, "serve" propagates to whatever the mapping configures, descriptor 2 is left alone.
  disable_existing_loggers defaults to False, or dictConfig would silence "serve.master".
- Text that came from the network goes through escape_control() before it is logged, so
  a CR/LF in a request target cannot forge a log line (log injection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

LOGGER_NAME = "serve"
ACCESS_LOGGER_NAME = "serve.access"
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# LogRecord attribute holding an access line's fields, merged into JSON output.
ACCESS_FIELDS_ATTR = "serve_access"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LEVELS = ("debug", "info", "warning", "error", "critical")
_STDERR_FD = 2
# A duplicate of the original descriptor 2 while descriptor 2 points at the log file.
_saved_stderr: int | None = None


def escape_control(value: str) -> str:
    """Replace C0 controls (CR and LF among them) and DEL with a visible \\xNN escape."""
    # isprintable() is a quick C scan that no control passes; the regex decides the rest.
    if value.isprintable() or _CONTROL.search(value) is None:
        return value
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, pid, logger, msg (+ exc, + access fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        access = getattr(record, ACCESS_FIELDS_ATTR, None)
        if access is not None:
            entry.update(access)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _ServeHandler(logging.StreamHandler):  # type: ignore[type-arg]  # TextIO stream
    """Marks the handler configure_logging() owns, so a second call can replace it."""


class _ServeFileHandler(_ServeHandler):
    """Appends to a file that reopen() can open again at the same path."""

    def __init__(self, path: str) -> None:
        super().__init__(_open_log(path))
        self.path = path

    def reopen(self) -> None:
        new = _open_log(self.path)
        self.acquire()
        try:
            old: TextIO = self.setStream(new) or new
        finally:
            self.release()
        if old is not new:
            old.close()

    def close(self) -> None:
        self.acquire()
        try:
            self.stream.close()
        finally:
            self.release()
        super().close()


def _open_log(path: str) -> TextIO:
    # Line buffering: each record is one write(2) on an O_APPEND file, so records from
    # several processes do not interleave.
    return open(path, "a", encoding="utf-8", buffering=1)  # the handler owns it


def reopen_log_files() -> None:
    """Open the log file again at its path (USR1 after logrotate); no-op on stderr.

    Raises OSError when the file cannot be opened; logging then continues to the old one.
    """
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, _ServeFileHandler):
            handler.reopen()
            if _saved_stderr is not None:
                _capture_stderr(handler.stream)


def tell_terminal(line: str) -> None:
    """Write `line` where stderr pointed before a log file took descriptor 2: an error that
    ends the process must reach the terminal (or the journal) that started it."""
    fd = _STDERR_FD if _saved_stderr is None else _saved_stderr
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.write(fd, line.encode("utf-8", "replace"))


def log_stream_fd() -> Callable[[], int] | None:
    """A function giving the descriptor our handler writes to now (a reopen changes it);
    None when log_config replaced our handler, or its stream has no descriptor."""
    owned = [h for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, _ServeHandler)]
    if not owned:
        return None
    handler = owned[0]

    def fd_now() -> int:
        # Looked up each time: reopen() gives the handler a new stream.
        return int(handler.stream.fileno())

    try:
        fd_now()
    except (AttributeError, OSError, ValueError):
        return None
    return fd_now


def _capture_stderr(stream: TextIO) -> None:
    """Point descriptor 2 at the log file `stream` writes to."""
    global _saved_stderr
    if _saved_stderr is None:
        _saved_stderr = os.dup(_STDERR_FD)
    sys.stderr.flush()
    os.dup2(stream.fileno(), _STDERR_FD)


def _release_stderr() -> None:
    """Give descriptor 2 back to what it was before _capture_stderr()."""
    global _saved_stderr
    if _saved_stderr is None:
        return
    sys.stderr.flush()
    os.dup2(_saved_stderr, _STDERR_FD)
    os.close(_saved_stderr)
    _saved_stderr = None


def _remove_own_handlers(logger: logging.Logger, *, close: bool = True) -> None:
    for old in [h for h in logger.handlers if isinstance(h, _ServeHandler)]:
        logger.removeHandler(old)
        if close:
            old.close()


def _apply_dict_config(config: Mapping[str, Any]) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    _remove_own_handlers(logger)
    _remove_own_handlers(logging.getLogger())
    _release_stderr()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    from logging.config import dictConfig  # only with log_config: most processes never need it

    dictConfig({"disable_existing_loggers": False, **config})


def configure_logging(
    level: str,
    fmt: Literal["text", "json"],
    log_file: str | None = None,
    *,
    log_config: Mapping[str, Any] | None = None,
) -> None:
    """Send "serve" and "serve.access" to stderr, or to `log_file`, in `fmt`; or, given
    `log_config`, hand logging to logging.config.dictConfig and ignore the rest.

    Safe to call more than once; raises OSError when `log_file` cannot be opened, and
    ValueError (TypeError for a wrong shape) when dictConfig rejects `log_config`.
    """
    if log_config is not None:
        _apply_dict_config(log_config)
        return
    name = level.lower()
    if name not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {level!r}")
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)
    handler = _ServeFileHandler(log_file) if log_file is not None else _ServeHandler(sys.stderr)
    handler.setFormatter(formatter)
    logger = logging.getLogger(LOGGER_NAME)
    _remove_own_handlers(logger)
    if isinstance(handler, _ServeFileHandler):
        _capture_stderr(handler.stream)
    else:
        _release_stderr()
    logger.addHandler(handler)
    logger.setLevel(name.upper())
    logger.propagate = False
    root = logging.getLogger()
    _remove_own_handlers(root, close=False)
    if fmt == "json":
        root.addHandler(handler)
        root.setLevel(name.upper())
    logging.getLogger(ACCESS_LOGGER_NAME).setLevel(logging.INFO)
