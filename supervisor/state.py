"""The master's one decision function: step(state, event, now) -> (state, actions).

Rules: no IO and no os calls here. Time arrives as `now` (time.monotonic seconds) and
everything the master learns arrives as an Event; step() is pure and returns a new frozen
state plus the Actions to execute, which only arbiter.py executes. Each stop signal is sent
at most once per worker (fleet.ask_to_stop says why).

The records live in fleet.py, the rolling replacements (reload, retirement) in reload.py,
blocked workers in blocked.py, the USR2 upgrade in takeover.py, the stop signals,
shutdown_delay and overdue kills in stopping.py, TTIN/TTOU in scaling.py, the preload
templates in preload.py. The counters /metrics shows (restarts by reason, reloads, the
traffic of exited workers) are kept here, where the decisions are.
Health is judged on Tick only, after the loop drained every channel in that wake, so a
heartbeat waiting in a socket buffer never makes a busy master abort a healthy worker.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import replace

from serve.server.channel import WorkerBootFailed, WorkerHeartbeat
from serve.server.exitcodes import BOOT_ERROR
from serve.supervisor import blocked, preload, reload, scaling, stopping, takeover
from serve.supervisor.actions import (
    Action,
    Halt,
    Log,
    ProbeHealth,
    ReopenLogs,
    SendSignal,
    Spawn,
)
from serve.supervisor.events import (
    ChildExited,
    Event,
    FilesChanged,
    GenerationFailed,
    GenerationLoaded,
    HealthSampled,
    MasterStarted,
    SignalReceived,
    SpawnFailed,
    TemplateReported,
    TemplateStarted,
    TemplateStartFailed,
    Tick,
    UpgradeFailed,
    UpgradeStarted,
    WorkerMessageReceived,
    WorkerSpawned,
)
from serve.supervisor.fleet import (
    RUNNING,
    STABLE_READY_S,
    STOPPING,
    Phase,
    SlotRecord,
    SupervisorState,
    Traffic,
    WorkerRecord,
    WorkerState,
    ask_to_stop,
    backoff_delay,
    by_pid,
    counted_restarts,
    exit_line,
    exit_text,
    occupant,
    with_slot,
    with_worker,
)
from serve.supervisor.stopping import BOOT_ATTEMPTS_MAX, HALT_CODES, halt_boot

Result = tuple[SupervisorState, list[Action]]


def step(state: SupervisorState, event: Event, now: float) -> Result:
    """Decide what `event` means for the fleet; the only way the master's state changes."""
    if state.phase is Phase.HALTED:
        return state, []
    state, actions = _handle(state, event, now)
    state, more = _converge(state, now)
    return state, actions + more


def next_deadline(state: SupervisorState) -> float | None:
    """The earliest time step() must see a Tick, or None when only events matter."""
    times = [
        record.kill_at
        for record in state.workers.values()
        if record.kill_at is not None and signal.SIGKILL not in record.signals_sent
    ]
    if state.phase in RUNNING:
        if preload.may_spawn(state):
            # Otherwise the template's report starts them: an overdue slot must not spin.
            times += [slot.due for slot in state.slots.values() if slot.due is not None]
        times += [
            record.last_heartbeat + state.policy.worker_timeout_s
            for record in state.workers.values()
            if blocked.is_judged(record)
        ]
        times.append(state.health_due or 0.0)
    if state.stop_at is not None:
        times.append(state.stop_at)
    return min(times + preload.deadlines(state), default=None)


def _handle(state: SupervisorState, event: Event, now: float) -> Result:
    if isinstance(event, SignalReceived):
        handler = _SIGNAL_HANDLERS.get(event.signum)
        return handler(state, now) if handler else (state, [])
    if isinstance(event, WorkerMessageReceived):
        return _handle_message(state, event, now)
    if isinstance(event, ChildExited):
        return _handle_exit(state, event, now)
    if isinstance(event, Tick):
        return _handle_tick(state, now)
    if isinstance(event, WorkerSpawned):
        return _handle_spawned(state, event, now)
    if isinstance(event, SpawnFailed):
        return _handle_spawn_failed(state, event, now)
    if isinstance(event, TemplateStarted):
        return preload.started(state, event, now)
    if isinstance(event, TemplateStartFailed):
        return preload.start_failed(state, event, now)
    if isinstance(event, TemplateReported):
        return preload.reported(state, event, now)
    if isinstance(event, GenerationLoaded):
        return reload.generation_loaded(state, event)
    if isinstance(event, GenerationFailed):
        return reload.generation_failed(state, event, now)
    if isinstance(event, HealthSampled):
        return _handle_health(state, event)
    if isinstance(event, FilesChanged):
        return _handle_files(state, event, now)
    if isinstance(event, MasterStarted):
        return replace(state, takeover_from=event.takeover_from), []
    if isinstance(event, (UpgradeStarted, UpgradeFailed)):
        return takeover.upgrade_result(state, event)
    return state, []


def _handle_spawned(state: SupervisorState, event: WorkerSpawned, now: float) -> Result:
    record = WorkerRecord(
        pid=event.pid,
        slot=event.slot,
        generation=event.generation,
        state=WorkerState.STARTING,
        started_at=now,
        last_heartbeat=now,
        request_limit=event.request_limit,
        kill_at=now + state.policy.boot_timeout_s,
    )
    message = f"worker {event.pid} booting (gen {event.generation})"
    actions: list[Action] = [Log(logging.INFO, message)]
    state = with_worker(state, record)
    if event.generation != state.generation:
        # A template's fork answered after its generation failed: nothing wants it.
        state, more = ask_to_stop(state, record, signal.SIGTERM, now)
        actions += more
    return state, actions


def _handle_spawn_failed(state: SupervisorState, event: SpawnFailed, now: float) -> Result:
    slot = state.slots.get(event.slot)
    if slot is None or event.generation != state.generation:
        return state, [Log(logging.ERROR, f"cannot start a worker: {event.reason}")]
    failures = slot.failures + 1
    delay = backoff_delay(failures)
    message = f"cannot start a worker: {event.reason}; retrying in {delay:.1f}s"
    state = with_slot(state, event.slot, SlotRecord(failures, now + delay))
    return state, [Log(logging.ERROR, message)]


def _handle_message(state: SupervisorState, event: WorkerMessageReceived, now: float) -> Result:
    record = state.workers.get(event.pid)
    if record is None:
        return state, []
    message = event.message
    if isinstance(message, WorkerHeartbeat):
        record = replace(
            record,
            last_heartbeat=now,
            requests=message.requests,
            connections=message.connections,
            traffic=Traffic.of(message),
            shedding=message.shedding,
        )
        return with_worker(state, record), []
    if isinstance(message, WorkerBootFailed):
        text = f"worker {event.pid} failed to boot: {message.message}"
        state = with_worker(state, replace(record, boot_error=message.message))
        return state, [Log(logging.ERROR, text)]
    if record.ready_at is not None:
        return state, []
    if record.state is WorkerState.DRAINING:
        # Asked to stop while booting: remember it got ready, keep its stop deadline.
        return with_worker(state, replace(record, ready_at=now, last_heartbeat=now)), []
    record = replace(
        record, state=WorkerState.READY, ready_at=now, kill_at=None, last_heartbeat=now
    )
    return with_worker(state, record), [Log(logging.INFO, f"worker {event.pid} ready")]


def _handle_exit(state: SupervisorState, event: ChildExited, now: float) -> Result:
    if event.pid in state.templates:
        return preload.exited(state, event, now)
    record = state.workers.get(event.pid)
    if record is None:
        return _handle_other_exit(state, event)
    state = replace(
        state,
        workers={p: r for p, r in state.workers.items() if p != event.pid},
        exited_traffic=state.exited_traffic.plus(record.traffic),
    )
    expected = record.state is WorkerState.DRAINING
    actions: list[Action] = [Log(*exit_line(record, event.exitcode, expected))]
    if state.phase not in RUNNING or expected:
        return state, actions
    if (
        state.phase is Phase.RELOADING
        and record.generation == state.generation
        and record.ready_at is None
    ):
        why = record.boot_error or f"worker {event.pid} {exit_text(event.exitcode)}"
        state, more = reload.abort_reload(state, now, why)
        return state, actions + more
    state, more = _schedule_respawn(state, record, event.exitcode, now)
    return state, actions + more


def _handle_other_exit(state: SupervisorState, event: ChildExited) -> Result:
    """Not a worker: the USR2 master we started, or an orphan adopted as PID 1."""
    if event.pid == state.upgrade_pid:
        return takeover.upgrade_exited(state, event)
    message = f"reaped process {event.pid}, not a worker ({exit_text(event.exitcode)})"
    return state, [Log(logging.INFO, message)]


def _schedule_respawn(
    state: SupervisorState, record: WorkerRecord, exitcode: int, now: float
) -> Result:
    slot = state.slots.get(record.slot)
    if slot is None or record.generation != state.generation:
        return state, []
    if occupant(state, record.slot) is not None:
        # A retiring worker died: its replacement already holds the slot.
        return state, []
    stable = record.ready_at is not None and now - record.ready_at >= STABLE_READY_S
    failures = 0 if stable else slot.failures + 1
    if state.phase is Phase.BOOTING and record.ready_at is None:
        if exitcode in HALT_CODES:
            why = f": {record.boot_error}" if record.boot_error else ""
            return halt_boot(state, exitcode, f"workers cannot boot (exit code {exitcode}){why}")
        if failures >= BOOT_ATTEMPTS_MAX:
            reason = f"workers died {failures} times before getting ready ({exit_text(exitcode)})"
            return halt_boot(state, BOOT_ERROR, reason)
    if signal.SIGKILL not in record.signals_sent:
        # Our SIGKILL (a boot timeout) counted as a timeout when it was sent.
        state = counted_restarts(state, "crash")
    delay = backoff_delay(failures)
    state = with_slot(state, record.slot, SlotRecord(failures, now + delay))
    if not delay:
        return state, []
    message = f"worker {record.pid} was not stable; next start in {delay:.1f}s"
    return state, [Log(logging.WARNING, message)]


def _handle_tick(state: SupervisorState, now: float) -> Result:
    state, actions = stopping.end_delay(state, now)
    if state.phase not in RUNNING:
        return state, actions
    state, more = blocked.abort_silent(state, now)
    actions += more
    if state.health_due is None or state.health_due <= now:
        state = replace(state, health_due=now + state.policy.health_interval_s)
        actions.append(ProbeHealth(tuple(sorted(state.workers))))
    return state, actions


def _handle_health(state: SupervisorState, event: HealthSampled) -> Result:
    cpu = dict(event.cpu)
    for pid, rss in event.rss:
        record = state.workers.get(pid)
        if record is not None:
            record = replace(record, rss=rss, cpu_s=cpu.get(pid, record.cpu_s))
            state = with_worker(state, record)
    return state, []


def _handle_files(state: SupervisorState, event: FilesChanged, now: float) -> Result:
    shown = ", ".join(event.paths[:5]) + (" ..." if len(event.paths) > 5 else "")
    state, actions = reload.request_reload(state, "files changed", now)
    return state, [Log(logging.INFO, f"changed: {shown}"), *actions]


def handle_hup(state: SupervisorState, now: float) -> Result:
    return reload.request_reload(state, "SIGHUP", now)


def handle_usr1(state: SupervisorState, now: float) -> Result:
    # Reopen first, so the line below is the first one in the new file.
    actions: list[Action] = [ReopenLogs(), Log(logging.INFO, "SIGUSR1: log files reopened")]
    # Not recorded in signals_sent: reopening twice is harmless, unlike a second SIGTERM.
    actions += [SendSignal(record.pid, signal.SIGUSR1) for record in by_pid(state)]
    return state, actions


def handle_usr2(state: SupervisorState, now: float) -> Result:
    return takeover.request_upgrade(state)


def handle_chld(state: SupervisorState, now: float) -> Result:
    # The loop reaps on every wake-up and reports each exit as ChildExited.
    return state, []


_SIGNAL_HANDLERS: dict[int, Callable[[SupervisorState, float], Result]] = {
    signal.SIGTERM: stopping.handle_term,
    signal.SIGINT: stopping.handle_int,
    signal.SIGQUIT: stopping.handle_quit,
    signal.SIGHUP: handle_hup,
    signal.SIGUSR1: handle_usr1,
    signal.SIGUSR2: handle_usr2,
    signal.SIGTTIN: scaling.handle_ttin,
    signal.SIGTTOU: scaling.handle_ttou,
    signal.SIGCHLD: handle_chld,
}


def _converge(state: SupervisorState, now: float) -> Result:
    """Move the fleet toward what the phase wants; runs after every event."""
    actions: list[Action] = []
    if state.phase in RUNNING:
        for rule in (
            reload.promote_ready,
            reload.finish_retirements,
            reload.retire_over_limits,
            _start_queued_reload,
            _spawn_due,
        ):
            state, more = rule(state, now)
            actions += more
    else:
        sig = signal.SIGTERM if state.phase is Phase.STOPPING else signal.SIGQUIT
        for record in by_pid(state):
            state, more = ask_to_stop(state, record, sig, now)
            actions += more
    for rule in (preload.converge, stopping.kill_overdue):
        state, more = rule(state, now)
        actions += more
    if state.phase in STOPPING and not state.workers and not state.templates:
        state = replace(state, phase=Phase.HALTED)
        actions.append(Halt(state.exit_code))
    return state, actions


def _start_queued_reload(state: SupervisorState, now: float) -> Result:
    if state.phase is not Phase.SERVING or state.queued_reload is None:
        return state, []
    return reload.request_reload(state, state.queued_reload, now)


def _spawn_due(state: SupervisorState, now: float) -> Result:
    actions: list[Action] = []
    if not preload.may_spawn(state):
        # Due slots stay due: the template's report of the imported app converges them.
        return state, actions
    for number, slot in sorted(state.slots.items()):
        if slot.due is not None and slot.due <= now:
            state = with_slot(state, number, replace(slot, due=None))
            actions.append(Spawn(number, state.generation))
    return state, actions
