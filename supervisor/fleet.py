"""The master's knowledge as frozen records: workers, slots, phase and policy.

Rules: no IO, no behaviour beyond small pure queries and copy-on-write updates; state.py
and the modules it calls decide, this module only describes. Records are never mutated: every change
builds a new SupervisorState, so a step() can be replayed and compared in tests.

Counters (restarts by reason, reloads by result, the traffic of exited workers) only
grow: what /metrics shows never goes backwards while this master lives.

A slot is one place in the fleet (0..desired-1). Its occupant is the worker of the current
generation that holds it and is neither retiring nor draining; a slot without one has a
`due` time when the next fork may start, which is how restart backoff is expressed. A
retiring worker still serves while the occupant that replaces it boots.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from serve.server.channel import ZERO_DURATIONS, ZERO_OVERLOAD, ZERO_RESPONSES, WorkerHeartbeat
from serve.supervisor.actions import Action, SendSignal
from serve.supervisor.config_schema import Config

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0
# Beyond graceful_timeout a worker still runs lifespan shutdown before it exits.
STOP_MARGIN_S = 5.0
# A worker asked to quit, or one stopped before it was ever ready, has nothing to drain.
QUIT_GRACE_S = 2.0
# A worker that stayed ready this long proved that its slot boots: its exit resets the backoff.
STABLE_READY_S = 5.0
# A slot whose last this many workers died before they were stable is crash-looping.
CRASH_LOOP_FAILURES = 5
# A worker reports this many times per worker_timeout, so one late tick is no verdict.
HEARTBEATS_PER_TIMEOUT = 4


class WorkerState(Enum):
    STARTING = "starting"  # forked; app import and lifespan startup not finished
    READY = "ready"  # accepting connections
    RETIRING = "retiring"  # still serving until the replacement in its slot is ready
    DRAINING = "draining"  # asked to stop (TERM, QUIT, ABRT or KILL sent); never replaced


class Phase(Enum):
    BOOTING = "booting"  # the first generation is not all ready yet; a boot error halts
    SERVING = "serving"
    RELOADING = "reloading"  # generation g+1 boots while g serves
    # TERM seen: serving on for shutdown_delay, with /readyz at 503, before the drain.
    DELAYING = "delaying"
    STOPPING = "stopping"  # graceful: workers drain, SIGKILL after their deadline
    QUITTING = "quitting"  # immediate: SIGQUIT, SIGKILL after a short grace
    HALTED = "halted"  # Halt was emitted; nothing happens any more


RUNNING = (Phase.BOOTING, Phase.SERVING, Phase.RELOADING, Phase.DELAYING)
STOPPING = (Phase.STOPPING, Phase.QUITTING)
# Workers whose event loop must keep sending heartbeats.
SERVING_STATES = (WorkerState.READY, WorkerState.RETIRING)
# Why a worker was replaced (the label of the restarts counter).
RESTART_REASONS = ("crash", "timeout", "memory", "max_requests", "reload")


@dataclass(frozen=True, slots=True)
class Policy:
    """What step() needs from the config: timeouts and the limits that retire a worker."""

    graceful_timeout_s: float = 30.0
    boot_timeout_s: float = 60.0
    worker_timeout_s: float = 30.0
    health_interval_s: float = 1.0
    # Bytes of RSS above which a worker is replaced; None: no limit.
    max_worker_memory: int | None = None
    # Seconds between TERM and the drain while the load balancers deregister us.
    shutdown_delay_s: float = 0.0
    # Workers are forked by the generation's template process (preload.py).
    preload: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            graceful_timeout_s=config.graceful_timeout,
            boot_timeout_s=config.boot_timeout,
            worker_timeout_s=config.worker_timeout,
            health_interval_s=config.health_interval,
            max_worker_memory=config.max_worker_memory,
            shutdown_delay_s=config.shutdown_delay,
            preload=config.preload,
        )


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a worker served, as its heartbeats count it (server.stats): all cumulative."""

    requests: int = 0
    responses: tuple[int, ...] = ZERO_RESPONSES
    durations: tuple[int, ...] = ZERO_DURATIONS
    duration_sum: float = 0.0
    overload: tuple[int, ...] = ZERO_OVERLOAD

    @classmethod
    def of(cls, heartbeat: WorkerHeartbeat) -> Traffic:
        return cls(
            heartbeat.requests,
            heartbeat.responses,
            heartbeat.durations,
            heartbeat.duration_sum,
            heartbeat.overload,
        )

    def plus(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests,
            tuple(a + b for a, b in zip(self.responses, other.responses, strict=True)),
            tuple(a + b for a, b in zip(self.durations, other.durations, strict=True)),
            self.duration_sum + other.duration_sum,
            tuple(a + b for a, b in zip(self.overload, other.overload, strict=True)),
        )


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    pid: int
    slot: int
    generation: int
    state: WorkerState
    started_at: float
    last_heartbeat: float
    requests: int = 0
    # Requests after which it is replaced (max_requests plus its jitter); 0: never.
    request_limit: int = 0
    # Resident memory in bytes and CPU seconds (user + system) at the last health probe.
    rss: int = 0
    cpu_s: float = 0.0
    # Open connections and what it served, at its last heartbeat.
    connections: int = 0
    traffic: Traffic = Traffic()
    # Shedding load (server.shedding) at its last heartbeat.
    shedding: bool = False
    # When it reported READY; None while it never did (decides backoff and drain deadline).
    ready_at: float | None = None
    # When the master SIGKILLs it unless it exits first (boot timeout or stop deadline).
    kill_at: float | None = None
    signals_sent: frozenset[int] = frozenset()
    # What it reported before it exited without getting ready (WorkerBootFailed).
    boot_error: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """The process that imported a preload generation's app and forks its workers."""

    pid: int
    generation: int
    started_at: float
    # When it reported the app imported; None while it loads (its workers wait for it).
    ready_at: float | None = None
    # When the master SIGKILLs it unless it exits first (boot timeout or stop deadline).
    kill_at: float | None = None
    signals_sent: frozenset[int] = frozenset()
    # What it reported before it exited without importing the app (WorkerBootFailed).
    boot_error: str | None = None


@dataclass(frozen=True, slots=True)
class SlotRecord:
    failures: int = 0  # boots in a row that died before their worker proved stable
    # When the next fork for this slot may start; None while it has an occupant or a fork
    # is in flight.
    due: float | None = 0.0


@dataclass(frozen=True, slots=True)
class Rollback:
    """What a reload replaced, put back if the new generation fails to boot."""

    generation: int
    policy: Policy
    desired: int


@dataclass(frozen=True, slots=True)
class ReloadRecord:
    """The latest reload, which `serve reload` waits for and `serve status` shows."""

    started: float
    reason: str  # what asked for it: "SIGHUP", "files changed"
    generation: int | None = None  # known once its config is loaded
    result: str | None = None  # None while under way, then "ok" or "failed"
    finished: float | None = None
    detail: str = ""  # why it failed


@dataclass(frozen=True, slots=True)
class SupervisorState:
    policy: Policy
    slots: Mapping[int, SlotRecord]
    workers: Mapping[int, WorkerRecord] = field(default_factory=dict)
    # The generation slots are filled from (during a reload: the one booting).
    generation: int = 1
    # The highest generation number ever started; a failed one's number is not reused.
    last_generation: int = 1
    phase: Phase = Phase.BOOTING
    exit_code: int = 0
    # Why exit_code is not 0, in one line for the operator's terminal.
    exit_reason: str = ""
    # Set while RELOADING: the serving generation to return to if the new one fails.
    rollback: Rollback | None = None
    # Why a reload was asked for while the fleet could not start one (booting, reloading).
    queued_reload: str | None = None
    # When the next health probe is due; None: at the next tick.
    health_due: float | None = None
    # USR2: the new master this one forked, until it stops us or dies.
    upgrade_pid: int | None = None
    # In a master started by USR2: the old master to stop once our workers are ready.
    takeover_from: int | None = None
    # While DELAYING: when the drain starts.
    stop_at: float | None = None
    # Workers replaced, by RESTART_REASONS; reloads by result ("ok", "failed").
    restarts: Mapping[str, int] = field(default_factory=dict)
    reloads: Mapping[str, int] = field(default_factory=dict)
    last_reload: ReloadRecord | None = None
    # The traffic of every worker that exited, so totals survive their replacement.
    exited_traffic: Traffic = Traffic()
    # With preload: template processes by pid; when the current generation, while it has
    # none, may start the next (None once that fork is asked for); failures in a row.
    templates: Mapping[int, TemplateRecord] = field(default_factory=dict)
    template_due: float | None = 0.0
    template_failures: int = 0

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


def workers_text(count: int) -> str:
    """'1 worker', '2 workers'."""
    return f"{count} worker" if count == 1 else f"{count} workers"


def status_text(state: SupervisorState) -> str:
    """One line for sd_notify STATUS and the logs: phase, worker count, generation."""
    ready = sum(1 for r in state.workers.values() if r.state is WorkerState.READY)
    phase, generation = state.phase.value, state.generation
    return f"{phase}: {ready} of {state.desired} workers ready (generation {generation})"


def exit_text(exitcode: int) -> str:
    """'exited with code N' or 'killed by SIGNAME' for an os.waitstatus_to_exitcode value."""
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"killed by {name}"


def exit_line(record: WorkerRecord, exitcode: int, expected: bool) -> tuple[int, str]:
    """The level and text of the master's log line for a worker's exit."""
    text = exit_text(exitcode)
    if expected and record.ready_at is None and -exitcode in record.signals_sent:
        # Our stop signal came before the worker's loop could catch it: stopped as asked.
        return logging.INFO, f"worker {record.pid} stopped while booting ({text})"
    level = logging.INFO if expected and exitcode == 0 else logging.WARNING
    return level, f"worker {record.pid} {text}"


def heartbeat_interval_s(worker_timeout_s: float) -> float:
    return min(1.0, worker_timeout_s / HEARTBEATS_PER_TIMEOUT)


def occupant(state: SupervisorState, slot: int) -> WorkerRecord | None:
    for record in state.workers.values():
        if (
            record.slot == slot
            and record.generation == state.generation
            and record.state not in (WorkerState.DRAINING, WorkerState.RETIRING)
        ):
            return record
    return None


def is_live(state: SupervisorState, now: float) -> bool:
    """/healthz: no slot is crash-looping, that is, lost its last CRASH_LOOP_FAILURES
    workers before they were stable and has no stable worker again yet, and no preload
    template failed that many times in a row (no worker can be forked then). (That the
    loop turns is proven by the answer itself.)"""
    if state.template_failures >= CRASH_LOOP_FAILURES:
        return False
    for number, slot in state.slots.items():
        if slot.failures < CRASH_LOOP_FAILURES:
            continue
        record = occupant(state, number)
        if record is None or record.ready_at is None or now - record.ready_at < STABLE_READY_S:
            return False
    return True


def handed_over(state: SupervisorState) -> bool:
    """USR2: our stop began while the new master we started lives, so it serves now."""
    return state.upgrade_pid is not None and state.phase not in (
        Phase.BOOTING,
        Phase.SERVING,
        Phase.RELOADING,
    )


def answers_ready(state: SupervisorState) -> bool:
    """/readyz: is_ready(), except that during a USR2 upgrade either master answers for
    both: the old one accepted USR2 only while it served, and the new one stops it only
    once its own workers are ready."""
    return state.takeover_from is not None or handed_over(state) or is_ready(state)


def is_ready(state: SupervisorState) -> bool:
    """A worker serves, and no stop has begun (DELAYING counts as begun)."""
    if state.phase not in (Phase.BOOTING, Phase.SERVING, Phase.RELOADING):
        return False
    return any(record.state in SERVING_STATES for record in state.workers.values())


def counted_restarts(state: SupervisorState, reason: str, count: int = 1) -> SupervisorState:
    restarts = {**state.restarts, reason: state.restarts.get(reason, 0) + count}
    return replace(state, restarts=restarts)


def counted_reload(
    state: SupervisorState, result: str, now: float, detail: str = ""
) -> SupervisorState:
    """Count a reload that ended with `result` and record it as the latest."""
    last = state.last_reload or ReloadRecord(now, "reload")
    last = replace(last, result=result, finished=now, detail=detail)
    reloads = {**state.reloads, result: state.reloads.get(result, 0) + 1}
    return replace(state, reloads=reloads, last_reload=last)


def by_pid(state: SupervisorState) -> list[WorkerRecord]:
    """The worker records in pid order, so actions come out in a stable order."""
    return sorted(state.workers.values(), key=lambda record: record.pid)


def with_worker(state: SupervisorState, record: WorkerRecord) -> SupervisorState:
    return replace(state, workers={**state.workers, record.pid: record})


def with_slot(state: SupervisorState, slot: int, record: SlotRecord) -> SupervisorState:
    return replace(state, slots={**state.slots, slot: record})


def ask_to_stop(
    state: SupervisorState, record: WorkerRecord, sig: int, now: float
) -> tuple[SupervisorState, list[Action]]:
    """Mark `record` draining and send `sig`, unless that signal was already sent to it.

    Each signal goes at most once to a worker: a second SIGTERM can land while a worker
    tears its interpreter down and kill it uncaught (gunicorn #2908, #3274).
    """
    if sig in record.signals_sent:
        return state, []
    if sig == signal.SIGQUIT or record.ready_at is None:
        deadline = now + QUIT_GRACE_S
    else:
        deadline = now + state.policy.graceful_timeout_s + STOP_MARGIN_S
    kill_at = deadline if record.kill_at is None else min(record.kill_at, deadline)
    record = replace(
        record,
        state=WorkerState.DRAINING,
        kill_at=kill_at,
        signals_sent=record.signals_sent | {sig},
    )
    return with_worker(state, record), [SendSignal(record.pid, sig)]
