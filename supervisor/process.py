"""Worker processes at the OS level: fork one, signal one, reap the dead.

Rules: fork, not fork+exec. The listeners are bound in the master and reach the worker as
inherited file objects, and the app is imported after the fork so a new worker runs fresh
code. That is only safe because the master stays single-threaded (a fork copies just the
calling thread, and a lock held by another thread would stay locked in the child forever);
nothing in the master may start a thread. Should that ever change, the fallback is
subprocess.Popen([sys.executable, "-m", "server", ...], pass_fds=...).

The child never returns into the master's code: whatever happens it leaves through
os._exit(), so no master `finally` (socket unlink, handler restore) runs in a worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from server.entry import run_worker
from server.settings import WorkerSettings

logger = logging.getLogger("serve.master")

# Exit code of a worker whose entry raised instead of returning a code.
CRASH_EXIT_CODE = 1


def spawn_worker(
    settings: WorkerSettings,
    listeners: Sequence[socket.socket],
    channel: socket.socket,
    reset_child: Callable[[], None],
    close_in_child: Iterable[socket.socket],
) -> int:
    """Fork a worker that runs server.entry.run_worker; return its pid in the master.

    `reset_child` runs first in the child (signal handlers back to their defaults); the
    sockets in `close_in_child` are the master's own (its ends of the workers' channels).
    Raises OSError when fork(2) fails.
    """
    master_only = list(close_in_child)

    def prepare_child() -> None:
        reset_child()
        for sock in master_only:
            # detach() first: the socket object must not close a reused fd number later.
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    # Blocked across the fork so that no signal runs the master's handler in the child
    # before reset_child() has put the defaults back; pending ones arrive after unblocking.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _run_child(settings, listeners, channel, prepare_child)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pid


def _run_child(
    settings: WorkerSettings,
    listeners: Sequence[socket.socket],
    channel: socket.socket,
    prepare: Callable[[], None],
) -> NoReturn:
    code = CRASH_EXIT_CODE
    try:
        prepare()
        code = run_worker(settings, list(listeners), channel)
    except BaseException:
        logger.exception("worker %d crashed", os.getpid())
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def send_signal(pid: int, sig: int) -> None:
    """Signal a worker; one that already exited is not an error (it is about to be reaped)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_for(pid: int) -> None:
    """Block until `pid` exits (only after SIGKILL, when the loop is gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def reap_children() -> list[tuple[int, int]]:
    """Collect every exited child without blocking: (pid, waitstatus_to_exitcode) pairs."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, os.waitstatus_to_exitcode(status)))
    return reaped
