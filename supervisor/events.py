"""What the master's loop observed, as input for state.step().

Rules: frozen slotted dataclasses named as past-tense facts, no behaviour. The loop in
arbiter.py builds them from signals, reaped children, channel datagrams, the timer and the
results of its own actions (a fork either produced a pid or failed); step() never sees the
OS directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.channel import WorkerMessage


@dataclass(frozen=True, slots=True)
class MasterStarted:
    """The listeners are bound and the loop is about to run."""


@dataclass(frozen=True, slots=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A worker was reaped; `exitcode` follows os.waitstatus_to_exitcode (negative = signal)."""

    pid: int
    exitcode: int


@dataclass(frozen=True, slots=True)
class WorkerMessageReceived:
    pid: int
    message: WorkerMessage


@dataclass(frozen=True, slots=True)
class WorkerSpawned:
    """The fork asked for by a Spawn action succeeded."""

    pid: int
    slot: int
    generation: int


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    """The fork asked for by a Spawn action failed (fork(2) or socketpair(2) error)."""

    slot: int
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The loop woke up because a deadline from next_deadline() passed."""

    now: float


Event = (
    MasterStarted
    | SignalReceived
    | ChildExited
    | WorkerMessageReceived
    | WorkerSpawned
    | SpawnFailed
    | Tick
)
