"""Drives the supervisor's pure core like the arbiter does, for the step() unit tests:
events in, actions out, no processes. Test modules import Script and the small action
filters from here."""

from __future__ import annotations

from collections.abc import Callable

from serve.server.channel import WorkerHeartbeat, WorkerReady
from serve.supervisor.actions import (
    Action,
    Halt,
    LoadGeneration,
    Log,
    Notify,
    ProbeHealth,
    SendSignal,
    Spawn,
    StartUpgrade,
)
from serve.supervisor.events import (
    ChildExited,
    Event,
    GenerationFailed,
    GenerationLoaded,
    HealthSampled,
    MasterStarted,
    SignalReceived,
    Tick,
    UpgradeStarted,
    WorkerMessageReceived,
    WorkerSpawned,
)
from serve.supervisor.fleet import Phase, Policy, initial_state
from serve.supervisor.state import step

# Health probes are hourly here, so they never land inside another test's deadlines.
POLICY = Policy(graceful_timeout_s=30.0, boot_timeout_s=60.0, health_interval_s=3600.0)


class Script:
    """Drives step() the way the arbiter does.

    Every event is followed by a Tick at the same time (the loop ticks after each wake),
    and the actions whose outcome the loop reports are answered: Spawn with WorkerSpawned
    (pids from 100 up), LoadGeneration with `self.load` (by default a valid config with
    the original worker count), ProbeHealth with the sizes in `self.rss`, StartUpgrade with
    UpgradeStarted(`self.upgrade_pid`).
    """

    def __init__(self, workers: int = 2, policy: Policy = POLICY) -> None:
        self.state = initial_state(policy, workers)
        self.now = 1000.0
        self._next_pid = 100
        self.request_limit = 0
        self.rss: dict[int, int] = {}
        self.upgrade_pid = 500
        self.load: Callable[[int], GenerationLoaded | GenerationFailed] = lambda generation: (
            GenerationLoaded(generation, workers, policy)
        )

    def feed(self, event: Event, after: float = 0.0) -> list[Action]:
        self.now += after
        pending: list[Event] = [event] if isinstance(event, Tick) else [event, Tick(self.now)]
        seen: list[Action] = []
        while pending:
            self.state, actions = step(self.state, pending.pop(0), self.now)
            seen += actions
            pending[:0] = [answer for action in actions if (answer := self._answer(action))]
        return seen

    def _answer(self, action: Action) -> Event | None:
        if isinstance(action, Spawn):
            self._next_pid += 1
            pid = self._next_pid - 1
            return WorkerSpawned(pid, action.slot, action.generation, self.request_limit)
        if isinstance(action, LoadGeneration):
            return self.load(action.generation)
        if isinstance(action, ProbeHealth):
            return HealthSampled(tuple((p, self.rss[p]) for p in action.pids if p in self.rss))
        if isinstance(action, StartUpgrade):
            return UpgradeStarted(self.upgrade_pid)
        return None

    def signal(self, sig: int, after: float = 0.0) -> list[Action]:
        return self.feed(SignalReceived(sig), after)

    def tick(self, after: float) -> list[Action]:
        return self.feed(Tick(self.now + after), after)

    def ready(self, pid: int, after: float = 0.0) -> list[Action]:
        return self.feed(WorkerMessageReceived(pid, WorkerReady()), after)

    def heartbeat(self, pid: int, requests: int = 0, after: float = 0.0) -> list[Action]:
        return self.feed(WorkerMessageReceived(pid, WorkerHeartbeat(requests, 0)), after)

    def exited(self, pid: int, code: int, after: float = 0.0) -> list[Action]:
        return self.feed(ChildExited(pid, code), after)

    def phase(self) -> Phase:
        return self.state.phase

    def pids(self) -> list[int]:
        return sorted(self.state.workers)

    def start_serving(self) -> list[int]:
        self.feed(MasterStarted())
        for pid in self.pids():
            self.ready(pid)
        assert self.phase() is Phase.SERVING
        return self.pids()


def messages(actions: list[Action]) -> list[str]:
    return [action.message for action in actions if isinstance(action, Log)]


def spawns(actions: list[Action]) -> list[Spawn]:
    return [action for action in actions if isinstance(action, Spawn)]


def signals(actions: list[Action]) -> list[tuple[int, int]]:
    return [(a.pid, a.sig) for a in actions if isinstance(a, SendSignal)]


def halts(actions: list[Action]) -> list[Halt]:
    return [action for action in actions if isinstance(action, Halt)]


def notes(actions: list[Action]) -> list[str]:
    return [action.kind for action in actions if isinstance(action, Notify)]
