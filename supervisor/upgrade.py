"""USR2: replace the running master by a freshly executed one on the same sockets.

Rules:
- The old master forks; the child executes the command line the master was started with
  (sys.orig_argv, so `serve ...` and `python -m supervisor ...` both work, with new code
  and a new interpreter) with the listening sockets on fds 3, 4, ... announced by the
  systemd LISTEN_FDS protocol (sockets.exec_with_listeners). No socket is closed or bound
  again: connections queued in the kernel are accepted by whichever generation of workers
  is accepting.
- The new master learns the old one's pid from SERVE_UPGRADE_FROM and trusts it only if it
  is its parent, so a stale variable never makes it signal a stranger. Once its own
  workers are ready it sends SIGTERM to the old master, which drains like on any stop.
- The new master is the old one's child until that one exits, so the old master reaps it
  if it dies early and then keeps serving (state.py decides, arbiter.py takes the pidfile
  back).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, MutableMapping, Sequence
from typing import NoReturn

from supervisor.sockets import Listener, exec_with_listeners

logger = logging.getLogger("serve.master")

UPGRADE_FROM_VAR = "SERVE_UPGRADE_FROM"
# Exit code of the forked child when the exec itself failed.
EXEC_FAILED = 127


def takeover_from(environ: MutableMapping[str, str]) -> int | None:
    """In a master started by USR2: the old master's pid; removes the variable."""
    value = environ.pop(UPGRADE_FROM_VAR, "")
    if not (value.isascii() and value.isdigit()):
        return None
    pid = int(value)
    return pid if pid == os.getppid() else None


def start_new_master(listeners: Sequence[Listener], reset_child: Callable[[], None]) -> int:
    """Fork and execute a new master on `listeners`; return its pid (OSError if no fork)."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    env = {**os.environ, UPGRADE_FROM_VAR: str(os.getpid())}
    # As for workers (process.py): no master handler may run in the child before exec.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _exec(argv, env, listeners, reset_child, previous)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pid


def _exec(
    argv: list[str],
    env: dict[str, str],
    listeners: Sequence[Listener],
    reset_child: Callable[[], None],
    mask: set[int | signal.Signals],
) -> NoReturn:
    try:
        reset_child()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        exec_with_listeners(argv, env, listeners)
    except BaseException:
        logger.exception("cannot execute the new master %s", argv)
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(EXEC_FAILED)
