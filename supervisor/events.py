"""What the master's loop observed, as input for state.step().

Rules: frozen slotted dataclasses named as past-tense facts, no behaviour. The loop in
arbiter.py builds them from signals, reaped children, channel datagrams, the timer, the
file watcher and the results of its own actions (a fork produced a pid or failed, a config
was loaded or rejected, a probe measured memory); step() never sees the OS directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from serve.server.channel import WorkerMessage
from serve.supervisor.fleet import Policy


@dataclass(frozen=True, slots=True)
class MasterStarted:
    """The listeners are bound and the loop is about to run.

    `takeover_from` is the old master's pid when a USR2 upgrade started this one.
    """

    takeover_from: int | None = None


@dataclass(frozen=True, slots=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A child was reaped; `exitcode` follows os.waitstatus_to_exitcode (negative = signal)."""

    pid: int
    exitcode: int


@dataclass(frozen=True, slots=True)
class WorkerMessageReceived:
    pid: int
    message: WorkerMessage


@dataclass(frozen=True, slots=True)
class WorkerSpawned:
    """The fork asked for by a Spawn action succeeded.

    `request_limit` is the max_requests (plus jitter) the worker was given; 0: none.
    """

    pid: int
    slot: int
    generation: int
    request_limit: int = 0


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    """The fork asked for by a Spawn action failed (fork(2) or socketpair(2) error)."""

    slot: int
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class TemplateStarted:
    """The fork asked for by a StartTemplate action succeeded."""

    pid: int
    generation: int


@dataclass(frozen=True, slots=True)
class TemplateStartFailed:
    """The fork asked for by a StartTemplate action failed."""

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class TemplateReported:
    """A template's message: WorkerReady once it imported the app, WorkerBootFailed before
    it exits with that code."""

    pid: int
    message: WorkerMessage


@dataclass(frozen=True, slots=True)
class GenerationLoaded:
    """LoadGeneration succeeded: the config is valid and its sockets are bound."""

    generation: int
    workers: int
    policy: Policy


@dataclass(frozen=True, slots=True)
class GenerationFailed:
    """LoadGeneration failed; `reason` is one line (a located config error, a bind error)."""

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class FilesChanged:
    """The reload watcher saw these files change (paths relative to a watched directory)."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HealthSampled:
    """A ProbeHealth measured these workers: resident memory (bytes) and CPU seconds used."""

    rss: tuple[tuple[int, int], ...]
    cpu: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class UpgradeStarted:
    """StartUpgrade forked and executed a new master: `pid`."""

    pid: int


@dataclass(frozen=True, slots=True)
class UpgradeFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The loop woke up; every channel and reaped child of this wake was reported first."""

    now: float


Event = (
    MasterStarted
    | SignalReceived
    | ChildExited
    | WorkerMessageReceived
    | WorkerSpawned
    | SpawnFailed
    | TemplateStarted
    | TemplateStartFailed
    | TemplateReported
    | GenerationLoaded
    | GenerationFailed
    | FilesChanged
    | HealthSampled
    | UpgradeStarted
    | UpgradeFailed
    | Tick
)
