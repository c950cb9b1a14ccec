"""The master's links to its workers: the fork of each one, directly or through its
generation's preload template, and the channel each one reports on.

Rules: no decisions (state.step() says when to spawn); arbiter.py calls spawn() and
start_template() for those actions, read() when poll() finds a channel readable (its key
carries the worker's pid) and once more when the worker is reaped, then close(). A worker
forked by a template becomes known when the template's answer arrives: its channel is
watched first, then the WorkerSpawned event goes to `deliver`. Every child closes the
master's own descriptors it inherited (channels, template sockets, listeners its
generation does not use, the metrics sockets, the pidfile lock): one held open by a
worker would outlive the master's use of it.
"""

from __future__ import annotations

import logging
import selectors
import socket
from collections.abc import Callable, Iterator

from serve.server import channel as ch
from serve.supervisor.actions import Spawn, StartTemplate
from serve.supervisor.events import Event, SpawnFailed, WorkerSpawned
from serve.supervisor.process import spawn_worker
from serve.supervisor.resources import Generation, Resources
from serve.supervisor.sockets import BindError
from serve.supervisor.template_link import TemplateLinks

logger = logging.getLogger("serve.master")

# Larger than any message server.channel encodes.
DATAGRAM_MAX = 65536


class WorkerLinks:
    def __init__(
        self,
        resources: Resources,
        selector: selectors.BaseSelector,
        reset_child: Callable[[], None],
        deliver: Callable[[Event], None],
    ) -> None:
        self._res = resources
        self._selector = selector
        self._reset_child = reset_child
        self._deliver = deliver
        self._channels: dict[int, socket.socket] = {}
        self._templates = TemplateLinks(selector, self._from_template, reset_child)

    def spawn(self, action: Spawn) -> Event | None:
        """Fork a worker: WorkerSpawned or SpawnFailed now, or None when its generation's
        template was asked (the answer is delivered later)."""
        generation = self._res.generations[action.generation]
        settings = generation.settings_for_worker()
        try:
            listeners = self._res.sockets.sockets(generation, action.slot)
        except BindError as exc:
            return SpawnFailed(action.slot, action.generation, str(exc))
        if generation.config.preload:
            own = self._res.sockets.sockets(generation, None)
            slot_only = [sock for sock in listeners if sock not in own]
            return self._templates.ask(action, settings.max_requests, slot_only)
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as exc:
            return SpawnFailed(action.slot, action.generation, f"socketpair: {exc}")
        try:
            pid = spawn_worker(
                settings,
                listeners,
                theirs,
                reset_child=self._reset_child,
                close_in_child=[ours, *self._master_only(generation, action.slot)],
                identity=generation.identity,
            )
        except OSError as exc:
            ours.close()
            return SpawnFailed(action.slot, action.generation, f"fork: {exc}")
        finally:
            theirs.close()
        self._watch(pid, ours)
        return WorkerSpawned(pid, action.slot, action.generation, settings.max_requests)

    def start_template(self, action: StartTemplate) -> Event:
        generation = self._res.generations[action.generation]
        # The template holds the shared sockets only: each worker's own come with its fork.
        listeners = self._res.sockets.sockets(generation, None)
        master_only = self._master_only(generation, None)
        return self._templates.start(action, generation, listeners, master_only)

    def read(self, pid: int) -> Iterator[ch.WorkerMessage]:
        """The messages waiting on worker `pid`'s channel, one datagram at a time."""
        sock = self._channels.get(pid)
        while sock is not None:
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
            yield message

    def read_templates(self) -> None:
        """Deliver every template's pending answers (a worker's pid before its exit)."""
        self._templates.read_all()

    def close(self, pid: int) -> None:
        """Child `pid` was reaped: close its channel, or its control socket if a template."""
        sock = self._channels.pop(pid, None)
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()
        self._templates.forget(pid)

    def close_all(self) -> None:
        for sock in self._channels.values():
            sock.close()
        self._templates.close()

    def _master_only(self, generation: Generation, slot: int | None) -> list[socket.socket | int]:
        """The master's sockets and descriptors (the pidfile's lock) that a child forked for
        `generation` and `slot` (None: a template) closes."""
        return [
            *self._channels.values(),
            *self._templates.sockets(),
            *self._res.sockets.others(generation, slot),
            *(self._res.metrics.sockets() if self._res.metrics else ()),
            *((self._res.pidfile.lock_fd,) if self._res.pidfile else ()),
        ]

    def _watch(self, pid: int, ours: socket.socket) -> None:
        ours.setblocking(False)
        self._channels[pid] = ours
        self._selector.register(ours, selectors.EVENT_READ, pid)

    def _from_template(self, event: Event, channel: socket.socket | None) -> None:
        if isinstance(event, WorkerSpawned) and channel is not None:
            self._watch(event.pid, channel)
        self._deliver(event)
