"""THE master loop: wait, drain, step, execute.

Rules: this is the only module that executes Actions, and it decides nothing: state.step()
does. Each Action type has one executor, here or in the object that owns what it touches:
worker_links.py forks workers and templates, publisher.py talks to systemd, resources.py
loads, commits and drops generations. The loop is single-threaded (process.py says why)
and never blocks anywhere but in one poll() on the signal self-pipe, every worker's
channel, the preload templates' sockets (template_link.py), the reload watcher's pipe and
the metrics sockets (whose keys carry the callback that serves them: supervisor.metrics),
with a timeout taken from state.next_deadline(), the systemd watchdog and metrics clients.
After each wake it turns what it sees into Events in a fixed order: signals, channel
datagrams, file changes, reaped children (each child's last datagrams and the templates'
answers before its exit, so a WorkerBootFailed or a worker's pid is never lost to the race
with SIGCHLD), then a Tick. After the Tick it publishes what changed (publisher.py): the
status file next to the pidfile, STATUS= and WATCHDOG=1.

poll rather than epoll: an epoll instance is a kernel object that a forked worker would
share, while poll keeps no state outside this process.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from serve.server.exitcodes import CONFIG_ERROR
from serve.server.logs import configure_logging, reopen_log_files, tell_terminal
from serve.supervisor import health
from serve.supervisor.actions import (
    AbandonUpgrade,
    Action,
    CommitGeneration,
    DropGeneration,
    Halt,
    LoadGeneration,
    Log,
    Notify,
    ProbeHealth,
    ReopenLogs,
    SendSignal,
    Spawn,
    StartTemplate,
    StartUpgrade,
    StopListening,
)
from serve.supervisor.config_loader import ConfigError
from serve.supervisor.config_schema import Config
from serve.supervisor.events import (
    ChildExited,
    Event,
    FilesChanged,
    MasterStarted,
    SignalReceived,
    Tick,
    WorkerMessageReceived,
)
from serve.supervisor.fleet import (
    RUNNING,
    Policy,
    SupervisorState,
    handed_over,
    initial_state,
)
from serve.supervisor.logsetup import apply_logging
from serve.supervisor.pidfile import PidfileError
from serve.supervisor.privileges import apply_umask
from serve.supervisor.process import reap_children, send_signal, wait_for
from serve.supervisor.publisher import Publisher
from serve.supervisor.resources import Resources
from serve.supervisor.signals import SignalCatcher
from serve.supervisor.slot_sockets import accepting_slots
from serve.supervisor.sockets import BindError
from serve.supervisor.state import next_deadline, step
from serve.supervisor.upgrade import hand_over, inherited_metrics, take_back, takeover_from
from serve.supervisor.watcher import WatcherError
from serve.supervisor.worker_links import WorkerLinks

logger = logging.getLogger("serve.master")

# Exit code when the loop itself fails (a bug): not part of the operator contract.
MASTER_CRASH_EXIT = 1
_WATCHER = "watcher"


def run_master(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    """Bind, fork the workers, supervise them until told to stop; return the exit code.

    `reload_config` re-reads the config on SIGHUP (the CLI passes one that keeps its
    original file, environment and flags); without it a reload keeps `config` and only
    imports the app afresh.
    """
    apply_umask(config.umask)
    error = apply_logging(config)
    if error is not None:
        configure_logging(config.log_level, config.log_format)
        logger.error("%s", error)
        return CONFIG_ERROR
    takeover = takeover_from(os.environ)
    try:
        resources = Resources(config, inherited_metrics(os.environ, takeover))
    except (PidfileError, BindError, WatcherError, ValueError, ConfigError) as exc:
        # Found at start: an operator error, like a bad config value.
        logger.error("%s", exc)
        _tell_terminal(config, str(exc))
        return CONFIG_ERROR
    try:
        state = initial_state(Policy.from_config(config), config.workers)
        with SignalCatcher() as catcher:
            master = _Master(resources, state, catcher, reload_config or (lambda: config))
            code = master.run(MasterStarted(takeover))
            if code != 0:
                _tell_terminal(config, master.exit_reason)
            return code
    finally:
        resources.close()
        logger.info("serve stopped")


def _tell_terminal(config: Config, message: str) -> None:
    """Repeat a fatal error on stderr when the log goes elsewhere (log_file, log_config),
    so the operator or the journal sees why serve stopped."""
    if config.log_file is not None or config.log_config is not None:
        tell_terminal(f"serve: error: {message}\n")


class _Master:
    def __init__(
        self,
        resources: Resources,
        state: SupervisorState,
        catcher: SignalCatcher,
        reload_config: Callable[[], Config],
    ) -> None:
        self._res = resources
        self._state = state
        self._catcher = catcher
        self._selector = selectors.PollSelector()
        self._selector.register(catcher.wakeup_fd, selectors.EVENT_READ)
        self._workers = WorkerLinks(resources, self._selector, catcher.reset_in_child, self._feed)
        if resources.watcher is not None:
            self._selector.register(resources.watcher.fd, selectors.EVENT_READ, _WATCHER)
        self._exit_code: int | None = None
        self._crash = ""
        self._publisher = Publisher(resources)
        if resources.metrics is not None:
            resources.metrics.attach(self._selector, lambda: self._state)
        self._executors: dict[type[Any], Callable[[Any], Event | None]] = {
            Log: self._log,
            SendSignal: self._signal,
            Spawn: self._workers.spawn,
            StartTemplate: self._workers.start_template,
            Halt: self._halt,
            LoadGeneration: lambda action: resources.load_generation(action, reload_config),
            CommitGeneration: resources.commit_generation,
            DropGeneration: resources.drop_generation,
            ProbeHealth: self._probe,
            ReopenLogs: self._reopen_logs,
            StartUpgrade: self._start_upgrade,
            AbandonUpgrade: self._abandon_upgrade,
            StopListening: lambda _: self._res.sockets.stop_listening(),
            Notify: self._publisher.notify,
        }

    def run(self, first: MasterStarted) -> int:
        try:
            self._feed(first)
            while self._exit_code is None:
                self._wake()
            return self._exit_code
        except Exception as exc:
            logger.exception("master loop failed (generation %d)", self._state.generation)
            self._crash = f"master loop failed: {exc!r}; see the log"
            self._kill_all()
            return MASTER_CRASH_EXIT
        finally:
            self._res.handed_over = self._state.upgrade_pid is not None
            self._workers.close_all()
            self._selector.close()

    @property
    def exit_reason(self) -> str:
        """Why the loop ended with a non-zero code, in one line."""
        return self._crash or self._state.exit_reason or f"exit code {self._exit_code}"

    def _wake(self) -> None:
        deadlines = [next_deadline(self._state), self._publisher.next_deadline()]
        if self._res.metrics is not None:
            deadlines.append(self._res.metrics.next_deadline())
        deadline = min((d for d in deadlines if d is not None), default=None)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self._catcher.pending():
            timeout = 0.0
        ready = self._selector.select(timeout)
        for signum in self._catcher.drain():
            self._feed(SignalReceived(signum))
        for key, mask in ready:
            if isinstance(key.data, int):
                self._read_channel(key.data)
            elif key.data == _WATCHER:
                self._read_watcher()
            elif callable(key.data):
                key.data(mask)
        if self._res.metrics is not None:
            self._res.metrics.expire(time.monotonic())
            if handed_over(self._state):
                # The new master serves the metrics listener from now on.
                self._res.metrics.suspend()
        for pid, exitcode in reap_children():
            # A template's answer naming this worker was sent before the worker could
            # become our child: read it first, so the exit is not taken for a stranger's.
            self._workers.read_templates()
            self._read_channel(pid)
            self._feed(ChildExited(pid, exitcode))
            self._workers.close(pid)
        self._feed(Tick(time.monotonic()))
        if self._exit_code is None:
            self._publisher.publish(self._state)

    def _feed(self, event: Event) -> None:
        """Step `event`, execute the actions, and step what executing them produced."""
        pending: deque[Event] = deque([event])
        while pending and self._exit_code is None:
            self._state, actions = step(self._state, pending.popleft(), time.monotonic())
            # Before the actions: a worker told to stop has its slot steered away first.
            self._fit_sockets()
            results = [result for action in actions if (result := self._execute(action))]
            pending.extendleft(reversed(results))

    def _fit_sockets(self) -> None:
        """Per-slot sockets follow the fleet (slot_sockets.py): steered to the slots whose
        worker accepts or boots (accepting_slots), closed above the worker count once
        no worker holds them."""
        state = self._state
        if state.phase in RUNNING:
            accepting = accepting_slots(state, time.monotonic())
            held = {record.slot for record in state.workers.values()}
            self._res.sockets.fit(state.desired, accepting, held)

    def _execute(self, action: Action) -> Event | None:
        return self._executors[type(action)](action)

    def _log(self, action: Log) -> None:
        logger.log(action.level, "%s", action.message)

    def _signal(self, action: SendSignal) -> None:
        send_signal(action.pid, action.sig)

    def _halt(self, action: Halt) -> None:
        self._exit_code = action.code

    def _probe(self, action: ProbeHealth) -> Event:
        self._publisher.measured()
        return health.probe(action.pids)

    def _reopen_logs(self, action: ReopenLogs) -> None:
        try:
            reopen_log_files()
        except OSError as exc:
            logger.error("cannot reopen the log file: %s", exc.strerror or exc)

    def _start_upgrade(self, action: StartUpgrade) -> Event:
        return hand_over(self._res, self._catcher.reset_in_child)

    def _abandon_upgrade(self, action: AbandonUpgrade) -> None:
        take_back(self._res)

    def _read_watcher(self) -> None:
        watcher = self._res.watcher
        assert watcher is not None
        changes = watcher.read_changes()
        if not watcher.running:
            logger.error("the reload watcher exited; file changes are no longer seen")
            self._selector.unregister(watcher.fd)
        if changes:
            self._feed(FilesChanged(tuple(changes)))

    def _read_channel(self, pid: int) -> None:
        for message in self._workers.read(pid):
            if self._exit_code is not None:
                return
            self._feed(WorkerMessageReceived(pid, message))

    def _kill_all(self) -> None:
        """After a loop failure: leave no orphan worker behind."""
        for pid in self._state.workers:
            send_signal(pid, signal.SIGKILL)
        for pid in self._state.workers:
            wait_for(pid)
