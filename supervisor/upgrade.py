"""USR2: replace the running master by a freshly executed one on the same sockets.

Rules:
- The old master forks; the child executes the command line the master was started with
  (sys.orig_argv, so `serve ...` and `python -m serve.supervisor ...` both work, with new code
  and a new interpreter) with the listening sockets on fds 3, 4, ... announced by the
  systemd LISTEN_FDS protocol (sockets.exec_with_listeners), and the metrics listener on
  the next descriptor, named by SERVE_UPGRADE_METRICS ("FD BIND"). No socket is closed or
  bound again: connections queued in the kernel are accepted by whichever generation of
  workers is accepting, and /readyz keeps answering. The new master adopts the metrics
  socket only if its own config binds the same address; otherwise it closes it.
- The new master learns the old one's pid from SERVE_UPGRADE_FROM and trusts it only if it
  is its parent, so a stale variable never makes it signal a stranger. Once its own
  workers are ready it sends SIGTERM to the old master, which drains like on any stop.
- The new master is the old one's child until that one exits, so the old master reaps it
  if it dies early and then keeps serving (takeover.py decides, take_back() recreates the
  pidfile).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, MutableMapping, Sequence
from typing import NoReturn

from serve.supervisor.events import UpgradeFailed, UpgradeStarted
from serve.supervisor.pidfile import Pidfile, PidfileError
from serve.supervisor.resources import Resources
from serve.supervisor.sockets import LISTEN_FDS_START, Listener, exec_with_listeners

logger = logging.getLogger("serve.master")

UPGRADE_FROM_VAR = "SERVE_UPGRADE_FROM"
UPGRADE_METRICS_VAR = "SERVE_UPGRADE_METRICS"
# What serve itself puts in the environment: not settings, never warned about.
INTERNAL_ENV = (UPGRADE_FROM_VAR, UPGRADE_METRICS_VAR)
# The old master's pidfile during a USR2 upgrade (nginx's name for it).
OLD_PIDFILE_SUFFIX = ".oldbin"
# Exit code of the forked child when the exec itself failed.
EXEC_FAILED = 127


def takeover_from(environ: MutableMapping[str, str]) -> int | None:
    """In a master started by USR2: the old master's pid; removes the variable."""
    value = environ.pop(UPGRADE_FROM_VAR, "")
    if not (value.isascii() and value.isdigit()):
        return None
    pid = int(value)
    return pid if pid == os.getppid() else None


def inherited_metrics(
    environ: MutableMapping[str, str], takeover: int | None
) -> tuple[int, str] | None:
    """In a master started by USR2: the metrics listener's descriptor and the bind that named
    it in the old master; removes the variable."""
    fd, _, bind = environ.pop(UPGRADE_METRICS_VAR, "").partition(" ")
    if takeover is None or not (fd.isascii() and fd.isdigit()) or not bind:
        return None
    return int(fd), bind


def hand_over(
    resources: Resources, reset_child: Callable[[], None]
) -> UpgradeStarted | UpgradeFailed:
    """Move our pidfile aside and start the new master on our sockets."""
    pidfile = resources.pidfile
    try:
        if pidfile is not None:
            pidfile.rename(OLD_PIDFILE_SUFFIX)
    except PidfileError as exc:
        return UpgradeFailed(str(exc))
    metrics = resources.metrics.handover() if resources.metrics is not None else None
    try:
        pid = start_new_master(resources.sockets.listeners, reset_child, metrics)
    except OSError as exc:
        take_back(resources)
        return UpgradeFailed(f"fork: {exc.strerror or exc}")
    return UpgradeStarted(pid)


def take_back(resources: Resources) -> None:
    """The upgrade failed: our pidfile returns to its own name."""
    old = resources.pidfile
    if old is None or not old.path.endswith(OLD_PIDFILE_SUFFIX):
        return
    try:
        resources.pidfile = Pidfile.create(old.path.removesuffix(OLD_PIDFILE_SUFFIX))
    except PidfileError as exc:
        logger.error("%s", exc)
        return
    old.remove()


def start_new_master(
    listeners: Sequence[Listener],
    reset_child: Callable[[], None],
    metrics: tuple[Listener, str] | None = None,
) -> int:
    """Fork and execute a new master on `listeners` and the (listener, bind) of `metrics`;
    return its pid (OSError if no fork)."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    env = {**os.environ, UPGRADE_FROM_VAR: str(os.getpid())}
    extra = []
    if metrics is not None:
        extra.append(metrics[0])
        env[UPGRADE_METRICS_VAR] = f"{LISTEN_FDS_START + len(listeners)} {metrics[1]}"
    # As for workers (process.py): no master handler may run in the child before exec.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _exec(argv, env, (listeners, extra), reset_child, previous)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pid


def _exec(
    argv: list[str],
    env: dict[str, str],
    sockets: tuple[Sequence[Listener], Sequence[Listener]],
    reset_child: Callable[[], None],
    mask: set[int | signal.Signals],
) -> NoReturn:
    listeners, extra = sockets
    try:
        reset_child()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        exec_with_listeners(argv, env, listeners, extra)
    except BaseException:
        logger.exception("cannot execute the new master %s", argv)
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(EXEC_FAILED)
