"""`serve reload|stop|status`: act on a running master found through its pidfile.

Rules:
- A pid is signalled only when pidfile.running_master() proves a master holds the file.
- Each command returns an exit code and prints its outcome; only cli.py exits. 0 means
  done: `reload` returns 0 only once the new generation is ready, because systemd's
  ExecReload= and deploy scripts act on that code; NOT_RUNNING (1) covers no master, a
  failed or ignored reload, and a timeout.
- The master and these commands share no socket, only files: `reload` learns the outcome
  from the status file (supervisor.status), waiting for a reload that started after its
  signal; `stop` waits on a pidfd for the exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping

from server import exitcodes
from supervisor.config_schema import Config
from supervisor.pidfile import ForeignPidError, PidfileError, process_exists, running_master
from supervisor.status import (
    StatusError,
    format_status,
    read_status,
    reload_outcome,
    status_path,
)

# Exit code of a control command that found no running master, or failed.
NOT_RUNNING = 1
# How much longer than shutdown_delay + graceful_timeout `serve stop` waits: the master's own
# final steps.
STOP_MARGIN_S = 10.0
# Beyond twice boot_timeout (a reload queued behind one under way), `serve reload` allows
# this for loading the config and binding.
RELOAD_MARGIN_S = 10.0
# How often `serve reload` reads the status file while it waits.
RELOAD_POLL_S = 0.1
_STOPPED_PHASES = ("delaying", "stopping", "quitting", "halted")


class NotRunning(Exception):
    """No master to control, or it did not do what was asked; str() is the message."""


def find_master(config: Config) -> tuple[str, int]:
    """The pidfile and the pid of the live master holding it; NotRunning otherwise."""
    assert config.pidfile is not None
    try:
        pid = running_master(config.pidfile)
    except ForeignPidError as exc:
        raise NotRunning(str(exc)) from None
    except PidfileError as exc:
        raise NotRunning(f"serve is not running: {exc}") from None
    if not process_exists(pid):
        raise NotRunning(
            f"serve is not running: pidfile {config.pidfile} names process {pid}, which is gone"
        )
    return config.pidfile, pid


def _signal_master(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise NotRunning(f"serve is not running: process {pid} is gone") from None


def reload_master(config: Config) -> int:
    """HUP the master, then wait for the reload's outcome in the status file."""
    pidfile, pid = find_master(config)
    path = status_path(pidfile)
    timeout = 2 * config.boot_timeout + RELOAD_MARGIN_S
    since = time.time()
    with exit_watch(pid) as exited:
        _signal_master(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            snapshot = _snapshot(path)
            outcome = reload_outcome(snapshot, since)
            if outcome is not None:
                return _report_reload(pid, outcome, snapshot)
            if snapshot.get("phase") in _STOPPED_PHASES:
                raise NotRunning(f"master {pid} is stopping: the reload was ignored")
            if exited(RELOAD_POLL_S):
                raise NotRunning(f"master {pid} exited before the reload ended")
            if time.monotonic() > deadline:
                raise NotRunning(
                    f"sent HUP to master {pid}, but no reload ended within {timeout:g} s; "
                    "see its log"
                )


def _snapshot(path: str) -> Mapping[str, object]:
    try:
        return read_status(path)
    except StatusError:
        # Not written yet, or replaced in the meantime: read again at the next poll.
        return {}


def _report_reload(pid: int, outcome: Mapping[str, object], snapshot: Mapping[str, object]) -> int:
    generation = outcome.get("generation")
    if outcome.get("result") == "ok":
        print(f"serve master {pid} reloaded: generation {generation} is ready")
        return exitcodes.OK
    detail = outcome.get("detail") or "see the master's log"
    serving = snapshot.get("generation")
    print(
        f"serve: error: reload failed: {detail}; generation {serving} keeps serving",
        file=sys.stderr,
    )
    return NOT_RUNNING


def stop_master(config: Config) -> int:
    """TERM the master and wait until it has exited."""
    _, pid = find_master(config)
    timeout = config.graceful_timeout + config.shutdown_delay + STOP_MARGIN_S
    with exit_watch(pid) as exited:
        _signal_master(pid, signal.SIGTERM)
        if not exited(timeout):
            print(f"serve: error: master {pid} did not stop within {timeout:g} s", file=sys.stderr)
            return NOT_RUNNING
    print(f"serve master {pid} stopped")
    return exitcodes.OK


def show_status(config: Config) -> int:
    """Print the master, its last reload and its workers from the status file."""
    pidfile, pid = find_master(config)
    try:
        snapshot = read_status(status_path(pidfile))
    except StatusError as exc:
        print(f"serve master {pid} is running; no worker status yet ({exc})")
        return exitcodes.OK
    if snapshot.get("master_pid") != pid:
        print(
            f"serve: warning: status file is from master {snapshot.get('master_pid')}, "
            f"not from the running master {pid}",
            file=sys.stderr,
        )
    print(format_status(snapshot), end="")
    return exitcodes.OK


@contextlib.contextmanager
def exit_watch(pid: int) -> Iterator[Callable[[float], bool]]:
    """Yield wait(timeout) -> True once `pid` exited. A pidfd (Linux 5.3+), opened before
    the signal is sent, cannot be fooled by pid reuse and sees a zombie as exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None

    def wait(timeout: float) -> bool:
        if pidfd is not None:
            return bool(select.select([pidfd], [], [], timeout)[0])
        deadline = time.monotonic() + timeout
        while process_exists(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    try:
        yield wait
    finally:
        if pidfd is not None:
            os.close(pidfd)
