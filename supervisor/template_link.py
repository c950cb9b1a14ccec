"""The master's side of its preload templates: control sockets and the forks asked of them.

Rules: no decisions (preload.py and state.py take them); worker_links.py calls in to start
a template, to ask it for a worker, and to turn what a template sends into Events. A fork
request carries the master's freshly made channel for the new worker; the master keeps its
own end aside, keyed by a token the template echoes, until the answer names the worker's
pid: only then is the channel registered under that pid. When a template is gone, the
ends it never answered for are closed (preload.exited asks the next template instead).
"""

from __future__ import annotations

import functools
import itertools
import selectors
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from serve.supervisor.actions import Spawn, StartTemplate
from serve.supervisor.events import (
    Event,
    SpawnFailed,
    TemplateReported,
    TemplateStarted,
    TemplateStartFailed,
    WorkerSpawned,
)
from serve.supervisor.process import become_subreaper
from serve.supervisor.resources import Generation
from serve.supervisor.template import CONTROL_MAX, decode_answer, fork_request, spawn_template


@dataclass(frozen=True, slots=True)
class _Asked:
    channel: socket.socket
    spawn: Spawn
    request_limit: int
    template: int


# Gets each Event read from a template, with the master's end of a new worker's channel.
Deliver = Callable[[Event, "socket.socket | None"], None]


class TemplateLinks:
    def __init__(
        self, selector: selectors.BaseSelector, deliver: Deliver, reset_child: Callable[[], None]
    ) -> None:
        self._selector = selector
        self._deliver = deliver
        self._reset_child = reset_child
        # Template pid -> the master's end of its control socket.
        self._controls: dict[int, socket.socket] = {}
        self._of_generation: dict[int, int] = {}
        self._asked: dict[int, _Asked] = {}
        self._tokens = itertools.count(1)
        self._subreaper = False

    def sockets(self) -> list[socket.socket]:
        """Every socket of the master's held here (a forked child closes its copies)."""
        return [*self._controls.values(), *(asked.channel for asked in self._asked.values())]

    def start(
        self,
        action: StartTemplate,
        generation: Generation,
        listeners: Sequence[socket.socket],
        close_in_child: Iterable[socket.socket | int],
    ) -> Event:
        """Fork the template and watch its control socket: TemplateStarted, or
        TemplateStartFailed."""
        try:
            if not self._subreaper:
                become_subreaper()
                self._subreaper = True
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:
            return TemplateStartFailed(action.generation, str(exc.strerror or exc))
        try:
            pid = spawn_template(
                generation.settings,
                listeners,
                theirs,
                self._reset_child,
                [ours, *self.sockets(), *close_in_child],
                identity=generation.identity,
            )
        except OSError as exc:
            ours.close()
            return TemplateStartFailed(action.generation, f"fork: {exc.strerror or exc}")
        finally:
            theirs.close()
        ours.setblocking(False)
        self._controls[pid] = ours
        self._of_generation[action.generation] = pid
        self._selector.register(ours, selectors.EVENT_READ, functools.partial(self._readable, pid))
        return TemplateStarted(pid, action.generation)

    def ask(
        self, spawn: Spawn, request_limit: int, listeners: Sequence[socket.socket]
    ) -> SpawnFailed | None:
        """Ask the generation's template for a worker that also accepts on `listeners` (its
        slot's own sockets, sent with the request): WorkerSpawned (or SpawnFailed) is
        delivered with its answer; SpawnFailed now when the request cannot be sent."""
        pid = self._of_generation.get(spawn.generation)
        if pid is None:
            return SpawnFailed(spawn.slot, spawn.generation, "the template is gone")
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as exc:
            return SpawnFailed(spawn.slot, spawn.generation, f"socketpair: {exc}")
        token = next(self._tokens)
        request = fork_request(token, request_limit)
        try:
            fds = [theirs.fileno(), *(sock.fileno() for sock in listeners)]
            socket.send_fds(self._controls[pid], [request], fds)
        except OSError as exc:
            ours.close()
            return SpawnFailed(spawn.slot, spawn.generation, f"template {pid}: {exc}")
        finally:
            theirs.close()
        ours.setblocking(False)
        self._asked[token] = _Asked(ours, spawn, request_limit, pid)
        return None

    def _readable(self, pid: int, mask: int) -> None:
        self.read(pid)

    def read_all(self) -> None:
        for pid in list(self._controls):
            self.read(pid)

    def read(self, pid: int) -> None:
        """Deliver what template `pid` sent since the last read."""
        control = self._controls.get(pid)
        while control is not None:
            try:
                data = control.recv(CONTROL_MAX)
            except OSError:
                return  # drained, or the template is gone (its exit is reaped apart)
            if not data:
                return
            for event, channel in self._decode(pid, data):
                self._deliver(event, channel)

    def _decode(self, pid: int, data: bytes) -> list[tuple[Event, socket.socket | None]]:
        answer = decode_answer(data)
        if answer is None:
            return []
        if not isinstance(answer, tuple):
            return [(TemplateReported(pid, answer), None)]
        token, outcome = answer
        asked = self._asked.pop(token, None)
        if asked is None:
            return []
        slot, generation = asked.spawn.slot, asked.spawn.generation
        if isinstance(outcome, str):
            asked.channel.close()
            return [(SpawnFailed(slot, generation, outcome), None)]
        return [(WorkerSpawned(outcome, slot, generation, asked.request_limit), asked.channel)]

    def forget(self, pid: int) -> None:
        """Template `pid` exited: close its control socket and the channels kept for it."""
        for token, asked in list(self._asked.items()):
            if asked.template == pid:
                del self._asked[token]
                asked.channel.close()
        self._of_generation = {g: p for g, p in self._of_generation.items() if p != pid}
        control = self._controls.pop(pid, None)
        if control is not None:
            self._selector.unregister(control)
            control.close()

    def close(self) -> None:
        for pid in list(self._controls):
            self.forget(pid)
