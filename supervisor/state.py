"""The master's one decision function: step(state, event, now) -> (state, actions).

Rules: no IO and no os calls here. Time arrives as `now` (time.monotonic seconds) and
everything the master learns arrives as an Event; step() is pure and returns a new frozen
state plus the Actions to execute, which only arbiter.py executes. Each signal is sent at
most once per worker: a second SIGTERM can land while a worker tears its interpreter down
and kill it uncaught (gunicorn #2908, #3274).

The records live in fleet.py. A reload starts generation g+1 in every slot and retires g
only once all of g+1 is ready; if g+1 fails to boot, g stays (its number may then be used
again: the failed workers are draining and never counted).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import replace

from server.channel import WorkerBootFailed, WorkerHeartbeat
from server.exitcodes import APP_LOAD_ERROR, BOOT_ERROR
from supervisor.actions import Action, Halt, Log, SendSignal, Spawn
from supervisor.events import (
    ChildExited,
    Event,
    SignalReceived,
    SpawnFailed,
    WorkerMessageReceived,
    WorkerSpawned,
)
from supervisor.fleet import (
    RUNNING,
    STOPPING,
    Phase,
    SlotRecord,
    SupervisorState,
    WorkerRecord,
    WorkerState,
    backoff_delay,
    exit_text,
    occupant,
    with_slot,
    with_worker,
)

# A worker that stayed ready this long proved that its slot boots: its exit resets the backoff.
STABLE_READY_S = 5.0
# Beyond graceful_timeout a worker still runs lifespan shutdown before it exits.
STOP_MARGIN_S = 5.0
# A worker asked to quit, or one stopped before it was ever ready, has nothing to drain.
QUIT_GRACE_S = 2.0
# Exit codes that mean "this app cannot boot": at first start the master halts on them.
HALT_CODES = frozenset({BOOT_ERROR, APP_LOAD_ERROR})


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
        times += [slot.due for slot in state.slots.values() if slot.due is not None]
    return min(times, default=None)


def _handle(state: SupervisorState, event: Event, now: float) -> Result:
    # MasterStarted and Tick carry no news of their own: _converge does the work.
    if isinstance(event, SignalReceived):
        handler = _SIGNAL_HANDLERS.get(event.signum)
        return handler(state, now) if handler else (state, [])
    if isinstance(event, WorkerSpawned):
        return _handle_spawned(state, event, now)
    if isinstance(event, SpawnFailed):
        return _handle_spawn_failed(state, event, now)
    if isinstance(event, WorkerMessageReceived):
        return _handle_message(state, event, now)
    if isinstance(event, ChildExited):
        return _handle_exit(state, event, now)
    return state, []


def _handle_spawned(state: SupervisorState, event: WorkerSpawned, now: float) -> Result:
    record = WorkerRecord(
        pid=event.pid,
        slot=event.slot,
        generation=event.generation,
        state=WorkerState.STARTING,
        started_at=now,
        last_heartbeat=now,
        kill_at=now + state.policy.boot_timeout_s,
    )
    message = f"worker {event.pid} booting (gen {event.generation})"
    return with_worker(state, record), [Log(logging.INFO, message)]


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
        record = replace(record, last_heartbeat=now, requests=message.requests)
        return with_worker(state, record), []
    if isinstance(message, WorkerBootFailed):
        text = f"worker {event.pid} failed to boot: {message.message}"
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
    record = state.workers.get(event.pid)
    if record is None:
        return state, []
    workers = {pid: r for pid, r in state.workers.items() if pid != event.pid}
    state = replace(state, workers=workers)
    expected = record.state is WorkerState.DRAINING
    level = logging.INFO if expected else logging.WARNING
    actions: list[Action] = [Log(level, f"worker {event.pid} {exit_text(event.exitcode)}")]
    if state.phase not in RUNNING or expected:
        return state, actions
    if (
        state.phase is Phase.RELOADING
        and record.generation == state.generation
        and record.ready_at is None
    ):
        state, more = _abort_reload(state, now)
        return state, actions + more
    if state.phase is Phase.BOOTING and record.ready_at is None and event.exitcode in HALT_CODES:
        message = f"workers cannot boot (exit code {event.exitcode}); stopping"
        state = replace(state, phase=Phase.STOPPING, exit_code=event.exitcode)
        return state, [*actions, Log(logging.ERROR, message)]
    state, more = _schedule_respawn(state, record, now)
    return state, actions + more


def _schedule_respawn(state: SupervisorState, record: WorkerRecord, now: float) -> Result:
    slot = state.slots.get(record.slot)
    if slot is None or record.generation != state.generation:
        return state, []
    stable = record.ready_at is not None and now - record.ready_at >= STABLE_READY_S
    failures = 0 if stable else slot.failures + 1
    delay = backoff_delay(failures)
    state = with_slot(state, record.slot, SlotRecord(failures, now + delay))
    if not delay:
        return state, []
    message = f"worker {record.pid} was not stable; next start in {delay:.1f}s"
    return state, [Log(logging.WARNING, message)]


def _begin_stop(state: SupervisorState, phase: Phase, message: str) -> Result:
    return replace(state, phase=phase), [Log(logging.INFO, message)]


def handle_term(state: SupervisorState, now: float) -> Result:
    if state.phase in STOPPING:
        return state, []
    return _begin_stop(state, Phase.STOPPING, "shutting down (graceful)")


def handle_int(state: SupervisorState, now: float) -> Result:
    # The operator pressed Ctrl-C once more while waiting: stop waiting.
    if state.phase is Phase.STOPPING:
        return _begin_stop(state, Phase.QUITTING, "shutting down (immediate)")
    return handle_term(state, now)


def handle_quit(state: SupervisorState, now: float) -> Result:
    if state.phase is Phase.QUITTING:
        return state, []
    return _begin_stop(state, Phase.QUITTING, "shutting down (immediate)")


def handle_hup(state: SupervisorState, now: float) -> Result:
    if state.phase is not Phase.SERVING:
        return state, [Log(logging.WARNING, f"SIGHUP ignored while {state.phase.value}")]
    generation = state.generation + 1
    slots = {number: SlotRecord() for number in state.slots}
    state = replace(state, generation=generation, slots=slots, phase=Phase.RELOADING)
    message = f"SIGHUP: starting generation {generation} (same config: it is not re-read yet)"
    return state, [Log(logging.INFO, message)]


def _abort_reload(state: SupervisorState, now: float) -> Result:
    """A worker of the new generation died before READY: stop that generation, keep ours."""
    failed = state.generation
    state = replace(state, generation=failed - 1, phase=Phase.SERVING)
    message = f"generation {failed} failed to boot; generation {failed - 1} keeps serving"
    actions: list[Action] = [Log(logging.ERROR, message)]
    for record in sorted(state.workers.values(), key=lambda r: r.pid):
        # Also retire old workers whose slot a SIGTTOU removed during the attempt.
        if record.generation == failed or record.slot not in state.slots:
            state, more = _ask_to_stop(state, record, signal.SIGTERM, now)
            actions += more
    # Slots whose old worker died during the attempt get a fresh one.
    slots = {
        number: SlotRecord(due=None if occupant(state, number) else now) for number in state.slots
    }
    return replace(state, slots=slots), actions


def handle_usr1(state: SupervisorState, now: float) -> Result:
    return state, [Log(logging.INFO, "SIGUSR1: logs go to stderr, nothing to reopen")]


def handle_usr2(state: SupervisorState, now: float) -> Result:
    return state, [Log(logging.WARNING, "SIGUSR2: binary upgrade is not supported yet")]


def handle_ttin(state: SupervisorState, now: float) -> Result:
    if state.phase not in RUNNING:
        return state, []
    desired = state.desired + 1
    state = with_slot(state, state.desired, SlotRecord())
    return state, [Log(logging.INFO, f"SIGTTIN: scaling up to {desired} workers")]


def handle_ttou(state: SupervisorState, now: float) -> Result:
    if state.phase not in RUNNING:
        return state, []
    if state.desired <= 1:
        return state, [Log(logging.WARNING, "SIGTTOU: keeping the last worker")]
    slot = state.desired - 1
    slots = {number: record for number, record in state.slots.items() if number != slot}
    retired = occupant(state, slot)
    state = replace(state, slots=slots)
    actions: list[Action] = [Log(logging.INFO, f"SIGTTOU: scaling down to {len(slots)} workers")]
    if retired is not None:
        state, more = _ask_to_stop(state, retired, signal.SIGTERM, now)
        actions += more
    return state, actions


def handle_chld(state: SupervisorState, now: float) -> Result:
    # The loop reaps on every wake-up and reports each exit as ChildExited.
    return state, []


_SIGNAL_HANDLERS: dict[int, Callable[[SupervisorState, float], Result]] = {
    signal.SIGTERM: handle_term,
    signal.SIGINT: handle_int,
    signal.SIGQUIT: handle_quit,
    signal.SIGHUP: handle_hup,
    signal.SIGUSR1: handle_usr1,
    signal.SIGUSR2: handle_usr2,
    signal.SIGTTIN: handle_ttin,
    signal.SIGTTOU: handle_ttou,
    signal.SIGCHLD: handle_chld,
}


def _stop_deadline(state: SupervisorState, record: WorkerRecord, sig: int, now: float) -> float:
    if sig == signal.SIGQUIT or record.ready_at is None:
        return now + QUIT_GRACE_S
    return now + state.policy.graceful_timeout_s + STOP_MARGIN_S


def _ask_to_stop(state: SupervisorState, record: WorkerRecord, sig: int, now: float) -> Result:
    if sig in record.signals_sent:
        return state, []
    deadline = _stop_deadline(state, record, sig, now)
    kill_at = deadline if record.kill_at is None else min(record.kill_at, deadline)
    record = replace(
        record,
        state=WorkerState.DRAINING,
        kill_at=kill_at,
        signals_sent=record.signals_sent | {sig},
    )
    return with_worker(state, record), [SendSignal(record.pid, sig)]


def _converge(state: SupervisorState, now: float) -> Result:
    """Move the fleet toward what the phase wants; runs after every event."""
    actions: list[Action] = []
    if state.phase in RUNNING:
        state, actions = _spawn_due(state, now)
        state, more = _promote_ready(state, now)
        actions += more
    else:
        sig = signal.SIGTERM if state.phase is Phase.STOPPING else signal.SIGQUIT
        for record in sorted(state.workers.values(), key=lambda r: r.pid):
            state, more = _ask_to_stop(state, record, sig, now)
            actions += more
    state, more = _kill_overdue(state, now)
    actions += more
    if state.phase in STOPPING and not state.workers:
        state = replace(state, phase=Phase.HALTED)
        actions.append(Halt(state.exit_code))
    return state, actions


def _spawn_due(state: SupervisorState, now: float) -> Result:
    actions: list[Action] = []
    for number, slot in sorted(state.slots.items()):
        if slot.due is not None and slot.due <= now:
            state = with_slot(state, number, replace(slot, due=None))
            actions.append(Spawn(number, state.generation))
    return state, actions


def _promote_ready(state: SupervisorState, now: float) -> Result:
    """Once every slot has a ready worker: announce the first start, or finish a reload."""
    if state.phase is Phase.SERVING:
        return state, []
    for slot in state.slots:
        record = occupant(state, slot)
        if record is None or record.state is not WorkerState.READY:
            return state, []
    if state.phase is Phase.BOOTING:
        message = f"serve ready ({state.desired} workers)"
        return replace(state, phase=Phase.SERVING), [Log(logging.INFO, message)]
    message = f"generation {state.generation} ready; retiring the previous workers"
    actions: list[Action] = [Log(logging.INFO, message)]
    state = replace(state, phase=Phase.SERVING)
    for record in sorted(state.workers.values(), key=lambda r: r.pid):
        if record.generation != state.generation:
            state, more = _ask_to_stop(state, record, signal.SIGTERM, now)
            actions += more
    return state, actions


def _kill_overdue(state: SupervisorState, now: float) -> Result:
    actions: list[Action] = []
    for record in sorted(state.workers.values(), key=lambda r: r.pid):
        if record.kill_at is None or record.kill_at > now:
            continue
        if signal.SIGKILL in record.signals_sent:
            continue
        if record.state is WorkerState.STARTING:
            timeout = state.policy.boot_timeout_s
            message = f"worker {record.pid} not ready after {timeout:g}s; killing it"
        else:
            message = f"worker {record.pid} did not stop in time; killing it"
        killed = replace(record, signals_sent=record.signals_sent | {signal.SIGKILL})
        state = with_worker(state, killed)
        actions += [Log(logging.WARNING, message), SendSignal(record.pid, signal.SIGKILL)]
    return state, actions
