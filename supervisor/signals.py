"""The master's signal handlers: they record the signal and nothing else.

Rules: a handler only appends the signal number to an unbounded deque (never drops one,
unlike gunicorn 23's five-entry queue); it never logs, forks or calls waitpid (gunicorn
#2816, #3004). Python's set_wakeup_fd writes a byte to a non-blocking self-pipe, which
wakes the loop's select; the loop then drains the deque. restore() puts back the handlers
and wakeup fd found at install time; a forked worker calls reset_in_child() first thing.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

# CHLD must have a handler (not SIG_IGN, which would reap children behind our back) so that
# a worker's death wakes the loop.
HANDLED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)

# The union signal.signal() takes and returns.
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class SignalCatcher:
    """Records signals for the loop; use as a context manager around the loop's lifetime."""

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED_SIGNALS) -> None:
        self.signals = tuple(signals)
        self._queue: deque[int] = deque()
        self._originals: dict[signal.Signals, _Handler] = {}
        self._old_wakeup_fd = -1
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    @property
    def wakeup_fd(self) -> int:
        """Readable whenever a signal arrived since the last drain()."""
        return self._read_fd

    @property
    def fds(self) -> tuple[int, int]:
        """Both ends of the self-pipe (a forked worker closes them)."""
        return self._read_fd, self._write_fd

    def install(self) -> None:
        # A full pipe only means the loop already has a wake-up pending.
        self._old_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in self.signals:
            self._originals[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._queue.append(signum)

    def pending(self) -> bool:
        """True when a signal is queued but not drained yet.

        CPython runs a Python handler some bytecodes after the C-level handler wrote the
        wake-up byte, so an entry can land after drain() consumed that byte. The loop asks
        this before it blocks (the call itself lets such a late handler run).
        """
        return bool(self._queue)

    def drain(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        received = []
        while self._queue:
            received.append(self._queue.popleft())
        return received

    def restore(self) -> None:
        """Put back the original handlers and wakeup fd, then close the pipe."""
        self._restore_handlers()
        signal.set_wakeup_fd(self._old_wakeup_fd)
        self._close()

    def reset_in_child(self) -> None:
        """In a forked worker: default dispositions, no wakeup fd, no copy of the pipe.

        As exec would: a signal ignored before the master caught it (`nohup` ignores SIGHUP)
        stays ignored, and every other goes back to its default, not to the handler of a
        program that embeds serve.run(): a worker running that handler would never drain.
        """
        for signum, original in self._originals.items():
            signal.signal(signum, _child_disposition(signum, original))
        self._originals.clear()
        signal.set_wakeup_fd(-1)
        self._close()

    def _restore_handlers(self) -> None:
        for signum, handler in self._originals.items():
            signal.signal(signum, handler)
        self._originals.clear()

    def _close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SignalCatcher:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def _child_disposition(signum: signal.Signals, original: _Handler) -> _Handler:
    if original is signal.SIG_IGN:
        return original
    return signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
