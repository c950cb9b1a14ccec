"""The access log's buffer: whole lines gathered in memory, written in few write(2) calls.

Rules:
- The buffer is written when it holds `size` bytes or `interval_s` after its oldest line
  (nginx's `access_log ... buffer= flush=`), and always when the worker drains, before it
  exits, before a USR1 reopen (its lines belong to the rotated file) and on the master's
  SIGABRT for a blocked loop, if Python code still runs then. A SIGKILL loses what the
  buffer holds: at most `size` bytes, or `interval_s` seconds of lines.
- Every write(2) holds whole lines, so several workers can share one destination. An
  O_APPEND file takes each write whole. On a pipe or socket (stderr under systemd or
  docker) only writes up to PIPE_BUF bytes are atomic, so a flush goes out in pieces of at
  most PIPE_BUF bytes cut at line ends; a single longer line goes alone in one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import stat
from collections.abc import Callable

logger = logging.getLogger("serve")

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
    """Whole lines gathered in memory and written to the log's descriptor in few writes.

    The access logger appends as append() does, inline: a method call per line was a
    twentieth of the line's cost."""

    def __init__(self, fd_of: Callable[[], int], size: int, interval_s: float) -> None:
        # Asked at each flush: a USR1 reopen gives the log file a new descriptor.
        self._fd_of = fd_of
        self._size = size
        self._interval_s = interval_s
        self.lines: list[str] = []
        # Bytes the lines may still grow by before appended() must act; 0 while no flush is
        # due, so that the first line arms the interval's timer.
        self.room = 0
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def append(self, line: str) -> None:
        self.lines.append(line)
        self.room -= len(line)
        if self.room <= 0:
            self.appended()

    def appended(self) -> None:
        """The lines outgrew `room`: write them if they reach `size`, else arm the timer."""
        pending = sum(map(len, self.lines))
        if pending >= self._size:
            self.flush()
        else:
            self.room = self._size - pending
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.room = 0
        if not self.lines:
            return
        # As the log streams do: a lone surrogate from a path must not cost the whole batch.
        data = "".join(self.lines).encode("utf-8", "backslashreplace")
        self.lines.clear()
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
