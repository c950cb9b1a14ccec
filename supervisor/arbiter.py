"""THE master loop: wait, drain, step, execute.

Rules: this is the only module that executes Actions, and it decides nothing: state.step()
does. The loop is single-threaded (process.py says why) and never blocks anywhere but in
one poll() on the signal self-pipe and every worker's channel, with a timeout taken from
state.next_deadline(). After each wake it turns what it sees into Events in a fixed order:
signals, channel datagrams, reaped children (each child's last datagrams before its exit,
so a WorkerBootFailed is never lost to the race with SIGCHLD), then a Tick.

poll rather than epoll: an epoll instance is a kernel object that a forked worker would
share, while poll keeps no state outside this process.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import time
from collections import deque

from server import channel as ch
from server.exitcodes import CONFIG_ERROR
from server.logs import configure_logging
from server.settings import WorkerSettings
from supervisor.actions import Action, Halt, Log, SendSignal, Spawn
from supervisor.config_schema import Config
from supervisor.events import (
    ChildExited,
    Event,
    MasterStarted,
    SignalReceived,
    SpawnFailed,
    Tick,
    WorkerMessageReceived,
    WorkerSpawned,
)
from supervisor.fleet import Policy, SupervisorState, initial_state
from supervisor.process import reap_children, send_signal, spawn_worker, wait_for
from supervisor.signals import SignalCatcher
from supervisor.sockets import BindError, Listener, bind_listeners, close_listeners
from supervisor.state import next_deadline, step

logger = logging.getLogger("serve.master")

# Exit code when the loop itself fails (a bug): not part of the operator contract.
MASTER_CRASH_EXIT = 1
# Larger than any message server.channel encodes.
DATAGRAM_MAX = 65536


def run_master(config: Config) -> int:
    """Bind, fork the workers, supervise them until told to stop; return the exit code."""
    configure_logging(config.log_level, config.log_format)
    try:
        settings = config.worker_settings()
    except ValueError as exc:
        logger.error("%s", exc)
        return CONFIG_ERROR
    try:
        listeners = bind_listeners(config.bind, config.backlog)
    except BindError as exc:
        # A bind failure is an operator error found at start, like a bad config value.
        logger.error("%s", exc)
        return CONFIG_ERROR
    try:
        for listener in listeners:
            logger.info("Listening on %s", listener.url)
        state = initial_state(Policy.from_config(config), config.workers)
        with SignalCatcher() as catcher:
            return _Master(settings, state, listeners, catcher).run()
    finally:
        close_listeners(listeners)
        logger.info("serve stopped")


class _Master:
    def __init__(
        self,
        settings: WorkerSettings,
        state: SupervisorState,
        listeners: list[Listener],
        catcher: SignalCatcher,
    ) -> None:
        self._settings = settings
        self._state = state
        self._sockets = [listener.sock for listener in listeners]
        self._catcher = catcher
        self._channels: dict[int, socket.socket] = {}
        self._selector = selectors.PollSelector()
        self._selector.register(catcher.wakeup_fd, selectors.EVENT_READ)
        self._exit_code: int | None = None

    def run(self) -> int:
        try:
            self._feed(MasterStarted())
            while self._exit_code is None:
                self._wake()
            return self._exit_code
        except Exception:
            logger.exception("master loop failed (generation %d)", self._state.generation)
            self._kill_all()
            return MASTER_CRASH_EXIT
        finally:
            for sock in self._channels.values():
                sock.close()
            self._selector.close()

    def _wake(self) -> None:
        deadline = next_deadline(self._state)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self._catcher.pending():
            timeout = 0.0
        ready = self._selector.select(timeout)
        for signum in self._catcher.drain():
            self._feed(SignalReceived(signum))
        for key, _ in ready:
            if isinstance(key.data, int):
                self._read_channel(key.data)
        for pid, exitcode in reap_children():
            self._read_channel(pid)
            self._feed(ChildExited(pid, exitcode))
            self._close_channel(pid)
        self._feed(Tick(time.monotonic()))

    def _feed(self, event: Event) -> None:
        """Step `event`, execute the actions, and step what executing them produced."""
        pending: deque[Event] = deque([event])
        while pending and self._exit_code is None:
            self._state, actions = step(self._state, pending.popleft(), time.monotonic())
            results = [result for action in actions if (result := self._execute(action))]
            pending.extendleft(reversed(results))

    def _execute(self, action: Action) -> Event | None:
        if isinstance(action, Log):
            logger.log(action.level, "%s", action.message)
        elif isinstance(action, SendSignal):
            send_signal(action.pid, action.sig)
        elif isinstance(action, Spawn):
            return self._spawn(action)
        elif isinstance(action, Halt):
            self._exit_code = action.code
        return None

    def _spawn(self, action: Spawn) -> Event:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as exc:
            return SpawnFailed(action.slot, action.generation, f"socketpair: {exc}")
        try:
            pid = spawn_worker(
                self._settings,
                self._sockets,
                theirs,
                reset_child=self._catcher.reset_in_child,
                close_in_child=[ours, *self._channels.values()],
            )
        except OSError as exc:
            ours.close()
            return SpawnFailed(action.slot, action.generation, f"fork: {exc}")
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channels[pid] = ours
        self._selector.register(ours, selectors.EVENT_READ, pid)
        return WorkerSpawned(pid, action.slot, action.generation)

    def _read_channel(self, pid: int) -> None:
        sock = self._channels.get(pid)
        while sock is not None and self._exit_code is None:
            try:
                data = sock.recv(DATAGRAM_MAX)
            except OSError:
                # BlockingIOError: drained. Anything else: the channel is unusable, and the
                # worker's exit (reaped separately) still tells the master what it needs.
                return
            message = ch.decode(data)
            if message is None:
                logger.debug("worker %d sent an unreadable message: %r", pid, data[:80])
                continue
            self._feed(WorkerMessageReceived(pid, message))

    def _close_channel(self, pid: int) -> None:
        sock = self._channels.pop(pid, None)
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()

    def _kill_all(self) -> None:
        """After a loop failure: leave no orphan worker behind."""
        for pid in self._state.workers:
            send_signal(pid, signal.SIGKILL)
        for pid in self._state.workers:
            wait_for(pid)
