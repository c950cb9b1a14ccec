"""What the arbiter holds: per generation a config, worker settings and listening sockets,
and for the master's whole life the pidfile, the reload watcher, the notifier and the
metrics listener.

Rules: no decisions here; state.step() says when a generation starts, commits or is
dropped, and arbiter.py calls in (load_generation, commit_generation, drop_generation).
Resources.close() gives everything back at exit.
Sockets are keyed by the bind string that named them, so a reload that keeps an address
keeps its kernel socket (and the connections queued on it) and a new address is bound
before any worker of the new generation forks. A socket is closed once no generation
still in use names it. Sockets inherited from systemd or from an upgrading master are the
whole set for every generation: a reloaded `bind` cannot change them, and a log line says
so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from serve.server.settings import WorkerSettings
from serve.supervisor.actions import CommitGeneration, DropGeneration, LoadGeneration
from serve.supervisor.config_bind import parse_bind
from serve.supervisor.config_loader import ConfigError, read_log_config
from serve.supervisor.config_schema import Config
from serve.supervisor.events import GenerationFailed, GenerationLoaded
from serve.supervisor.fleet import Policy, heartbeat_interval_s
from serve.supervisor.logsetup import apply_logging, logging_changed
from serve.supervisor.notify import Notifier
from serve.supervisor.pidfile import Pidfile
from serve.supervisor.privileges import apply_umask
from serve.supervisor.slot_sockets import SlotGroup
from serve.supervisor.sockets import (
    BindError,
    Listener,
    bind_listeners,
    bind_reuseport,
    close_listeners,
    inherited_from_systemd,
)
from serve.supervisor.status import status_path
from serve.supervisor.watcher import Watcher

logger = logging.getLogger("serve.master")

# Keys a reload cannot apply: the master holds what they name for its whole life.
_RESTART_KEYS = ("pidfile", "reload", "metrics")

if TYPE_CHECKING:
    from serve.supervisor.metrics import MetricsServer


@dataclass(frozen=True, slots=True)
class Generation:
    config: Config
    settings: WorkerSettings
    binds: tuple[str, ...]

    def settings_for_worker(self) -> WorkerSettings:
        """The settings one new worker gets: its own max_requests, jitter included."""
        limit = self.config.max_requests
        if limit:
            import random  # only with max_requests: kept off the start-up path

            limit += random.randint(0, self.config.max_requests_jitter)
        return replace(self.settings, max_requests=limit)

    @property
    def identity(self) -> tuple[str | None, str | None]:
        return self.config.user, self.config.group


def _shown(url: str, config: Config) -> str:
    """The listener's URL as clients use it: https when TLS is on."""
    if config.ssl.certfile is not None and url.startswith("http://"):
        return "https://" + url.removeprefix("http://")
    return url


class Sockets:
    """Every listening socket the master holds, by the bind string that named it; a TCP
    bind under accept_balance: reuseport holds one socket per worker slot (slot_sockets.py),
    the first of which stands for the bind where one socket is asked for."""

    def __init__(
        self,
        bound: tuple[dict[str, Listener], dict[str, SlotGroup]],
        inherited: bool,
        bind: tuple[str, ...],
    ) -> None:
        self._listeners, self._groups = bound
        self._inherited = inherited
        # The bind the master started with: only a change from it deserves a warning.
        self._first_bind = bind

    @classmethod
    def open(cls, config: Config) -> Sockets:
        """Adopt LISTEN_FDS sockets if we were given some, else bind `config.bind`.

        Raises BindError naming the address that failed.
        """
        inherited = inherited_from_systemd(os.environ)
        bound = _adopted(inherited) if inherited is not None else _bind(config.bind, config)
        for listener in bound[0].values():
            logger.info("Listening on %s", _shown(listener.url, config))
        return cls(bound, inherited is not None, config.bind)

    @property
    def listeners(self) -> list[Listener]:
        """Every socket, each slot's included, in the order a new master adopts them."""
        every: list[Listener] = []
        for value, listener in self._listeners.items():
            group = self._groups.get(value)
            every += group.listeners if group is not None else [listener]
        return every

    def prepare(self, config: Config) -> Generation:
        """The generation for `config`, binding its new addresses.

        Raises ValueError for a config workers cannot use, BindError for an address,
        ConfigError for an unreadable log_config file.
        """
        settings = replace(
            config.worker_settings(),
            heartbeat_interval_s=heartbeat_interval_s(config.worker_timeout),
            log_config=read_log_config(config.log_config) if config.log_config else None,
        )
        if self._inherited:
            if config.bind != self._first_bind:
                logger.warning("bind is not reloaded: the sockets were passed in by the parent")
            return Generation(config, settings, tuple(self._listeners))
        listeners, groups = _bind([v for v in config.bind if v not in self._listeners], config)
        for listener in listeners.values():
            logger.info("Listening on %s", _shown(listener.url, config))
        self._listeners.update(listeners)
        self._groups.update(groups)
        return Generation(config, settings, tuple(dict.fromkeys(config.bind)))

    def sockets(self, generation: Generation, slot: int | None) -> list[socket.socket]:
        """What a worker of `generation` in `slot` accepts on (None: the sockets every
        worker shares, for a preload template). Raises BindError for a new slot's socket."""
        backlog = generation.config.backlog
        every = []
        for value in generation.binds:
            group = self._groups.get(value)
            if group is None:
                every.append(self._listeners[value].sock)
            elif slot is not None:
                every.append(group.for_slot(slot, backlog))
        return every

    def others(self, generation: Generation, slot: int | None) -> list[socket.socket]:
        """The sockets a child forked for `generation` and `slot` does not use: it closes
        its copies, or a socket the master closes later would stay open (and unanswered)
        in it."""
        every = []
        for value, listener in self._listeners.items():
            group = self._groups.get(value)
            if value not in generation.binds:
                every += group.others(None) if group is not None else [listener.sock]
            elif group is not None:
                every += group.others(slot)
        return every

    def fit(self, desired: int, serving: Collection[int], held: Collection[int]) -> None:
        """Per-slot sockets follow the fleet: see SlotGroup.fit."""
        for group in self._groups.values():
            group.fit(desired, serving, held)

    def keep_only(self, generations: Iterable[Generation]) -> None:
        """Close every socket that none of `generations` names."""
        used = {value for generation in generations for value in generation.binds}
        for value in [v for v in self._listeners if v not in used]:
            listener = self._listeners.pop(value)
            logger.info("Closing %s", listener.url)
            group = self._groups.pop(value, None)
            if group is not None:
                group.close()
            else:
                close_listeners([listener])

    def stop_listening(self) -> None:
        """Close every socket; close() still removes the unix socket files we created."""
        for listener in self.listeners:
            listener.sock.close()

    def close(self, *, unlink: bool = True) -> None:
        close_listeners(self.listeners, unlink=unlink)
        self._listeners.clear()
        self._groups.clear()


def _bind(
    values: Iterable[str], config: Config
) -> tuple[dict[str, Listener], dict[str, SlotGroup]]:
    """Bind `values`: a TCP one under accept_balance: reuseport gets a socket for each of
    `config.workers` slots. Raises BindError, holding nothing then."""
    listeners: dict[str, Listener] = {}
    groups: dict[str, SlotGroup] = {}
    try:
        for value in values:
            if config.accept_balance == "reuseport" and parse_bind(value).kind == "tcp":
                first = bind_reuseport(value, config.backlog, exclusive=not config.reuse_port)
                groups[value] = SlotGroup([first])
                groups[value].for_slot(config.workers - 1, config.backlog)
                listeners[value] = first
            else:
                (listeners[value],) = bind_listeners(
                    [value],
                    config.backlog,
                    socket_mode=config.socket_mode,
                    reuse_port=config.reuse_port,
                )
    except BaseException:
        for value, listener in listeners.items():
            group = groups.get(value)
            group.close() if group is not None else close_listeners([listener])
        raise
    return listeners, groups


def _adopted(inherited: list[Listener]) -> tuple[dict[str, Listener], dict[str, SlotGroup]]:
    """Inherited sockets by URL: the per-slot sockets an upgrading master handed over are
    a group again, in slot order (a group of one included); a socket systemd passed stays
    one shared socket."""
    by_url: dict[str, list[Listener]] = {}
    for listener in inherited:
        by_url.setdefault(listener.url, []).append(listener)
    listeners = {url: same[0] for url, same in by_url.items()}
    groups = {url: SlotGroup(same) for url, same in by_url.items() if len(same) > 1 or same[0].slot}
    return listeners, groups


class Resources:
    """What the master holds for its whole life; close() gives it all back."""

    def __init__(self, config: Config, inherited_metrics: tuple[int, str] | None = None) -> None:
        """Create the pidfile, bind (or adopt) the sockets, start the reload watcher.

        `inherited_metrics` is the metrics listener's descriptor and bind that a USR2
        upgrade handed over. Raises PidfileError, BindError, ValueError, ConfigError or
        WatcherError, holding nothing then.
        """
        metrics_fd = _adopted_metrics_fd(config, inherited_metrics)
        self.pidfile = Pidfile.create(config.pidfile) if config.pidfile else None
        self.watcher: Watcher | None = None
        self.metrics: MetricsServer | None = None
        self.notifier = Notifier.from_env(os.environ)
        self.generations: dict[int, Generation] = {}
        self.handed_over = False
        try:
            self.sockets = Sockets.open(config)
        except BaseException:
            self._remove_pidfile()
            raise
        try:
            self.generations[1] = self.sockets.prepare(config)
            if config.reload.enabled:
                self.watcher = Watcher.start(config.reload)
                spec = config.reload
                logger.info(
                    "Reload: watching %s for %s (excluding %s)",
                    ", ".join(os.path.abspath(d) for d in spec.dirs),
                    " ".join(spec.include),
                    " ".join(spec.exclude),
                )
            if config.metrics.bind is not None:
                # Imported only when configured: prometheus_client costs every master and
                # every forked worker start time and memory.
                from serve.supervisor.metrics import MetricsServer

                self.metrics = MetricsServer(config.metrics.bind, metrics_fd)
        except BaseException:
            self.close()
            raise

    def load_generation(
        self, action: LoadGeneration, reload_config: Callable[[], Config]
    ) -> GenerationLoaded | GenerationFailed:
        """Read the config again and bind its new sockets for a reload."""
        try:
            config = reload_config()
            generation = self.sockets.prepare(config)
        except (ConfigError, ValueError, BindError) as exc:
            return GenerationFailed(action.generation, str(exc))
        self.generations[action.generation] = generation
        if not isinstance(config.app, str):
            logger.warning("the app is an object: the new workers run the code of the first")
        return GenerationLoaded(action.generation, config.workers, Policy.from_config(config))

    def commit_generation(self, action: CommitGeneration) -> None:
        """Forget the older generations and their sockets; apply what the master applies."""
        current = self.generations[action.generation]
        previous = [g.config for n, g in self.generations.items() if n != action.generation]
        self.generations = {action.generation: current}
        self.sockets.keep_only([current])
        config = current.config
        apply_umask(config.umask)
        for key in _RESTART_KEYS:
            if any(getattr(old, key) != getattr(config, key) for old in previous):
                logger.warning("%s changed: it takes effect at the next start or USR2", key)
        if any(old.accept_balance != config.accept_balance for old in previous):
            # A new master adopts the sockets as they are: only a new address, or a restart.
            logger.warning("accept_balance changed: addresses bound from now on use it")
        if logging_changed(previous, config):
            error = apply_logging(config)
            if error is not None:
                logger.error("%s", error)

    def drop_generation(self, action: DropGeneration) -> None:
        self.generations.pop(action.generation, None)
        self.sockets.keep_only(self.generations.values())

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.metrics is not None:
            self.metrics.close()
        # After a USR2 upgrade the unix socket files belong to the new master.
        self.sockets.close(unlink=not self.handed_over)
        self._remove_pidfile()

    def _remove_pidfile(self) -> None:
        if self.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(status_path(self.pidfile.path))
            self.pidfile.remove()


def _adopted_metrics_fd(config: Config, inherited: tuple[int, str] | None) -> int | None:
    """The handed-over metrics descriptor if our config binds the same address; closed
    otherwise, or the address would stay taken and unanswered."""
    if inherited is None:
        return None
    fd, bind = inherited
    if config.metrics.bind == bind:
        return fd
    with contextlib.suppress(OSError):
        os.close(fd)
    return None
