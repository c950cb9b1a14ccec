"""The master's knowledge as frozen records: workers, slots, phase and policy.

Rules: no IO, no behaviour beyond small pure queries and copy-on-write updates; state.py
decides, this module only describes. Records are never mutated: every change builds a new
SupervisorState, so a step() can be replayed and compared in tests.

A slot is one place in the fleet (0..desired-1). Its occupant is the worker of the current
generation that holds it and is not draining; a slot without one has a `due` time when the
next fork may start, which is how restart backoff is expressed.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from supervisor.config_schema import Config

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0


class WorkerState(Enum):
    STARTING = "starting"  # forked; app import and lifespan startup not finished
    READY = "ready"  # accepting connections
    DRAINING = "draining"  # asked to stop (TERM, QUIT or KILL sent); never replaced


class Phase(Enum):
    BOOTING = "booting"  # the first generation is not all ready yet; a boot error halts
    SERVING = "serving"
    RELOADING = "reloading"  # generation g+1 boots while g serves
    STOPPING = "stopping"  # graceful: workers drain, SIGKILL after their deadline
    QUITTING = "quitting"  # immediate: SIGQUIT, SIGKILL after a short grace
    HALTED = "halted"  # Halt was emitted; nothing happens any more


RUNNING = (Phase.BOOTING, Phase.SERVING, Phase.RELOADING)
STOPPING = (Phase.STOPPING, Phase.QUITTING)


@dataclass(frozen=True, slots=True)
class Policy:
    """The timeouts step() needs from the config."""

    graceful_timeout_s: float = 30.0
    boot_timeout_s: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(graceful_timeout_s=config.graceful_timeout, boot_timeout_s=config.boot_timeout)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    pid: int
    slot: int
    generation: int
    state: WorkerState
    started_at: float
    last_heartbeat: float
    requests: int = 0
    # When it reported READY; None while it never did (decides backoff and drain deadline).
    ready_at: float | None = None
    # When the master SIGKILLs it unless it exits first (boot timeout or stop deadline).
    kill_at: float | None = None
    signals_sent: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class SlotRecord:
    failures: int = 0  # boots in a row that died before their worker proved stable
    # When the next fork for this slot may start; None while it has an occupant or a fork
    # is in flight.
    due: float | None = 0.0


@dataclass(frozen=True, slots=True)
class SupervisorState:
    policy: Policy
    slots: Mapping[int, SlotRecord]
    workers: Mapping[int, WorkerRecord] = field(default_factory=dict)
    generation: int = 1
    phase: Phase = Phase.BOOTING
    exit_code: int = 0

    @property
    def desired(self) -> int:
        return len(self.slots)


def initial_state(policy: Policy, workers: int) -> SupervisorState:
    return SupervisorState(policy=policy, slots={slot: SlotRecord() for slot in range(workers)})


def backoff_delay(failures: int) -> float:
    """Seconds to wait before the next fork of a slot after `failures` failed boots."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_FIRST_S * 2.0 ** min(failures - 1, 32), BACKOFF_MAX_S)


def exit_text(exitcode: int) -> str:
    """'exited with code N' or 'killed by SIGNAME' for an os.waitstatus_to_exitcode value."""
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"killed by {name}"


def occupant(state: SupervisorState, slot: int) -> WorkerRecord | None:
    for record in state.workers.values():
        if (
            record.slot == slot
            and record.generation == state.generation
            and record.state is not WorkerState.DRAINING
        ):
            return record
    return None


def with_worker(state: SupervisorState, record: WorkerRecord) -> SupervisorState:
    return replace(state, workers={**state.workers, record.pid: record})


def with_slot(state: SupervisorState, slot: int, record: SlotRecord) -> SupervisorState:
    return replace(state, slots={**state.slots, slot: record})
