"""The preload template: one process per generation that imports the app and forks its workers.

Rules:
- The master forks the template like a worker (process.fork_child: default signal
  dispositions, the master's sockets closed, SIGTERM when the master dies, the configured
  user). The template imports the app, collects the garbage the import left, then
  gc.freeze() moves every object left to the permanent generation: a worker's collections
  never write to those objects' headers, so their pages stay shared copy-on-write (a full
  collection in a worker would otherwise copy them all). The master itself
  never imports the app, so the next generation's template imports the new code.
- Master and template talk over a SOCK_SEQPACKET socketpair ("control"): the template
  sends WorkerReady once the app is imported (or WorkerBootFailed, and exits 4); the
  master sends one fork request per worker, a small JSON object with the worker's channel
  and its slot's own listening sockets attached (SCM_RIGHTS; the template holds only the
  sockets all workers share); the template answers each with the new worker's pid or why the
  fork failed. The master closing its end (or SIGTERM) ends the template.
- Workers must stay the master's children, for waitpid, exit codes and the death signal.
  So the template forks a middle process that forks the worker, answers the master and
  exits; the master is a child subreaper (PR_SET_CHILD_SUBREAPER), so the kernel hands the
  orphaned worker to it. The answer is sent before the middle process exits, so the master
  has it in its socket before it can reap that worker. The worker waits until it is the
  master's child before arming PR_SET_PDEATHSIG (armed earlier, it would fire when the
  middle process exits), then checks that the master is still there.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import NoReturn

from serve.server import channel as ch
from serve.server.entry import load, prepare_process, serve
from serve.server.exitcodes import APP_LOAD_ERROR, OK
from serve.server.settings import ASGIApp, WorkerSettings
from serve.supervisor.process import (
    CRASH_EXIT_CODE,
    ORPHAN_EXIT_CODE,
    die_with_parent,
    fork_child,
    switch_identity,
)

logger = logging.getLogger("serve")

# Larger than any request or answer on the control socket.
CONTROL_MAX = 4096
# A fork request carries the worker's channel and its slot's own sockets, one per address.
MAX_FDS = 64


def spawn_template(
    settings: WorkerSettings,
    listeners: Sequence[socket.socket],
    control: socket.socket,
    reset_child: Callable[[], None],
    close_in_child: Iterable[socket.socket | int],
    *,
    identity: tuple[str | None, str | None] = (None, None),
) -> int:
    """Fork the template for one generation; return its pid. Raises OSError."""
    master_pid = os.getpid()

    def become_template() -> int:
        failed = switch_identity(identity, control)
        return failed or _Template(settings, list(listeners), control, master_pid).run()

    return fork_child(become_template, reset_child, close_in_child)


def fork_request(token: int, max_requests: int) -> bytes:
    return json.dumps({"token": token, "max_requests": max_requests}).encode()


def decode_answer(data: bytes) -> tuple[int, int | str] | ch.WorkerMessage | None:
    """(token, worker pid) or (token, why the fork failed), a WorkerMessage, or None."""
    try:
        body = json.loads(data)
        if body.get("t") == "forked":
            return int(body["token"]), int(body["pid"])
        if body.get("t") == "fork_failed":
            return int(body["token"]), str(body["reason"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return ch.decode(data)


class _Template:
    def __init__(
        self,
        settings: WorkerSettings,
        listeners: list[socket.socket],
        control: socket.socket,
        master_pid: int,
    ) -> None:
        self.settings = settings
        self.listeners = listeners
        self.control = control
        self.master_pid = master_pid

    def run(self) -> int:
        prepare_process(self.settings)
        # Ctrl-C reaches the whole process group; the master decides what it means.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.control.setblocking(True)
        app = load(self.settings, self.control)
        if app is None:
            return APP_LOAD_ERROR
        # Collect before freezing, although the holes it leaves get filled (and copied) by
        # the workers: importing FastAPI and pydantic leaves so much cyclic garbage that
        # keeping it frozen cost more (bench/preload_memory.py: PSS 26.5 against 18.5 MiB
        # per worker with the collector off during the import).
        gc.collect()
        gc.freeze()
        self.control.send(ch.encode(ch.WorkerReady()))
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, CONTROL_MAX, MAX_FDS)
            except ConnectionResetError:
                return OK
            if not data:
                return OK  # the master closed its end: this generation is over
            if not fds:
                continue
            request = json.loads(data)
            channel, *own = (socket.socket(fileno=fd) for fd in fds)
            try:
                limit = int(request["max_requests"])
                self.fork_worker(app, int(request["token"]), limit, channel, own)
            finally:
                for sock in (channel, *own):
                    sock.close()

    def fork_worker(
        self,
        app: ASGIApp,
        token: int,
        max_requests: int,
        channel: socket.socket,
        own: list[socket.socket],
    ) -> None:
        """Fork a worker on the shared sockets and `own` (its slot's, from the master)."""
        settings = replace(self.settings, max_requests=max_requests)
        try:
            middle = os.fork()
        except OSError as exc:
            self.answer({"t": "fork_failed", "token": token, "reason": f"fork: {exc}"})
            return
        if middle == 0:
            self.run_middle(app, token, settings, channel, [*self.listeners, *own])
        with contextlib.suppress(ChildProcessError):
            os.waitpid(middle, 0)

    def run_middle(
        self,
        app: ASGIApp,
        token: int,
        settings: WorkerSettings,
        channel: socket.socket,
        listeners: list[socket.socket],
    ) -> NoReturn:
        code = OK
        try:
            pid = os.fork()
            if pid == 0:
                self.run_worker(app, settings, channel, listeners)
            self.answer({"t": "forked", "token": token, "pid": pid})
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                self.answer({"t": "fork_failed", "token": token, "reason": f"fork: {exc}"})
            code = CRASH_EXIT_CODE
        os._exit(code)

    def run_worker(
        self,
        app: ASGIApp,
        settings: WorkerSettings,
        channel: socket.socket,
        listeners: list[socket.socket],
    ) -> NoReturn:
        code = CRASH_EXIT_CODE
        try:
            self.control.close()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _await_adoption(self.master_pid)
            die_with_parent()
            if os.getppid() != self.master_pid:
                code = ORPHAN_EXIT_CODE
            else:
                # Again in the worker: a log file is opened afresh (it may have been rotated).
                prepare_process(settings)
                code = serve(settings, app, listeners, channel)
        except BaseException:
            logger.exception("worker %d crashed", os.getpid())
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def answer(self, body: dict[str, object]) -> None:
        self.control.send(json.dumps(body).encode())


def _await_adoption(master_pid: int) -> None:
    """Return once the middle process that forked us is gone (we are the master's child
    then, or an orphan if the master died too)."""
    parent = os.getppid()
    if parent == master_pid:
        return
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        return
    try:
        # A pidfd turns readable when its process exits, after its children were re-parented.
        select.select([pidfd], [], [])
    finally:
        os.close(pidfd)
