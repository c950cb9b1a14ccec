"""Worker processes at the OS level: fork one, signal one, reap the dead.

fork_child() is also how the master forks a preload template (template.py), which then
forks that generation's workers itself; the master becomes a child subreaper for them.

Rules: fork, not fork+exec. The listeners are bound in the master and reach the worker as
inherited file objects, and the app is imported after the fork so a new worker runs fresh
code. That is only safe because the master stays single-threaded (a fork copies just the
calling thread, and a lock held by another thread would stay locked in the child forever);
nothing in the master may start a thread (the reload watcher is a helper process for this
reason). Should that ever change, the fallback is
subprocess.Popen([sys.executable, "-m", "serve.server", ...], pass_fds=...).

The child never returns into the master's code: whatever happens it leaves through
os._exit(), so no master `finally` (socket unlink, pidfile removal, handler restore) runs
in a worker. Before the app is imported the child asks the kernel for SIGTERM when the
master dies (PR_SET_PDEATHSIG, so even a SIGKILLed master leaves no worker serving on
alone), ignores SIGUSR1 until its loop handles it (its default action would kill a booting
worker that the master asked to reopen its log), and drops to the configured user (then
asks for the death signal again: a change of credentials clears it).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from serve.server import channel as ch
from serve.server.entry import run_worker
from serve.server.exitcodes import BOOT_ERROR
from serve.server.settings import WorkerSettings
from serve.supervisor.privileges import PrivilegeError, drop_privileges

logger = logging.getLogger("serve.master")

# Exit code of a worker whose entry raised instead of returning a code.
CRASH_EXIT_CODE = 1
# Exit code of a worker that found its master gone before it could start.
ORPHAN_EXIT_CODE = 0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Loaded once in the master: a dlopen in every child would be wasted work.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def spawn_worker(
    settings: WorkerSettings,
    listeners: Sequence[socket.socket],
    channel: socket.socket,
    reset_child: Callable[[], None],
    close_in_child: Iterable[socket.socket | int],
    *,
    identity: tuple[str | None, str | None] = (None, None),
) -> int:
    """Fork a worker that runs server.entry.run_worker; return its pid in the master.

    `reset_child` runs first in the child (signal handlers back to their defaults); the
    sockets and descriptors in `close_in_child` are the master's own (its ends of the
    workers' channels, the pidfile's lock);
    `identity` is the (user, group) the worker switches to. Raises OSError when fork(2)
    fails.
    """

    def become_worker() -> int:
        failed = switch_identity(identity, channel)
        return failed or run_worker(settings, list(listeners), channel)

    return fork_child(become_worker, reset_child, close_in_child)


def fork_child(
    body: Callable[[], int],
    reset_child: Callable[[], None],
    close_in_child: Iterable[socket.socket | int],
) -> int:
    """Fork a child of the master that runs `body` and exits with what it returns; return
    its pid. The child is prepared as the module docstring says. Raises OSError."""
    master_only = list(close_in_child)
    master_pid = os.getpid()

    def prepare_child() -> None:
        reset_child()
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        for item in master_only:
            # detach() first: the socket object must not close a reused fd number later.
            with contextlib.suppress(OSError):
                os.close(item if isinstance(item, int) else item.detach())
        die_with_parent()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    # Blocked across the fork so that no signal runs the master's handler in the child
    # before reset_child() has put the defaults back; pending ones arrive after unblocking.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            run_child(body, prepare_child, master_pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pid


def run_child(body: Callable[[], int], prepare: Callable[[], None], master_pid: int) -> NoReturn:
    """Prepare, run `body` unless the master is gone already, and leave by os._exit()."""
    code = CRASH_EXIT_CODE
    try:
        prepare()
        # The master may have died before the death signal was armed.
        code = ORPHAN_EXIT_CODE if os.getppid() != master_pid else body()
    except BaseException:
        logger.exception("process %d crashed", os.getpid())
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent dies (a no-op off Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def become_subreaper() -> None:
    """Adopt orphaned descendants, as PID 1 would (preload: the workers a template forks
    through a short-lived middle process). Raises OSError where the kernel refuses."""
    if _LIBC is None or _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno() if _LIBC is not None else 0
        raise OSError(errno, "prctl(PR_SET_CHILD_SUBREAPER) failed: preload needs Linux")


def switch_identity(identity: tuple[str | None, str | None], channel: socket.socket) -> int:
    """Drop to the configured user; BOOT_ERROR (reported on `channel`) if that fails, else 0."""
    try:
        drop_privileges(*identity)
    except PrivilegeError as exc:
        logger.error("%s", exc)
        with contextlib.suppress(OSError):
            channel.send(ch.encode(ch.WorkerBootFailed(BOOT_ERROR, str(exc))))
        return BOOT_ERROR
    # The kernel clears the death signal when a process changes its credentials.
    die_with_parent()
    return 0


def send_signal(pid: int, sig: int) -> None:
    """Signal a child; one that already exited is not an error (it is about to be reaped)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_for(pid: int) -> None:
    """Block until `pid` exits (only after SIGKILL, when the loop is gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def reap_children() -> list[tuple[int, int]]:
    """Collect every exited child without blocking: (pid, waitstatus_to_exitcode) pairs.

    waitpid(-1) reaps every child, not only workers: as PID 1 in a container the master
    adopts orphans, and each must be reaped or it stays a zombie.
    """
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
