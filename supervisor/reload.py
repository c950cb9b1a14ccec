"""Pure decisions that replace workers: reloads, retirements and blocked workers.

Rules: no IO and no os calls, like state.py, which calls these from step(). Two rolling
paths, and on both the replacement is started before the old worker is asked to drain:
- A reload (SIGHUP, a file change) asks the loop to load the config for generation g+1
  (LoadGeneration), starts g+1 in every slot next to g, and retires g only once all of
  g+1 is ready (CommitGeneration). If g+1 fails to boot, g keeps serving with its own
  policy and worker count (DropGeneration); a failed generation's number is never reused.
  A reload asked for while another runs (or during the first boot) is queued, not lost.
- A retirement (max_requests, max_worker_memory) marks one worker RETIRING, which frees
  its slot; the new occupant boots while the old one serves on, and the old one gets its
  SIGTERM once the occupant is ready. One retirement at a time.
A worker whose loop is blocked (no heartbeat for worker_timeout) serves nobody any more:
it gets SIGABRT for a stack dump and its slot a new worker at once. A draining worker is
judged the same way while the fleet runs (its replacement already exists).
A USR2 upgrade replaces the master itself: the new one (our child until we exit) stops us
once its workers are ready; if it dies first, we keep serving and take the pidfile back.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.supervisor.actions import (
    AbandonUpgrade,
    Action,
    CommitGeneration,
    DropGeneration,
    LoadGeneration,
    Log,
    Notify,
    SendSignal,
    StartUpgrade,
)
from serve.supervisor.events import (
    ChildExited,
    GenerationFailed,
    GenerationLoaded,
    UpgradeFailed,
    UpgradeStarted,
)
from serve.supervisor.fleet import (
    RUNNING,
    SERVING_STATES,
    Phase,
    Policy,
    ReloadRecord,
    Rollback,
    SlotRecord,
    SupervisorState,
    WorkerRecord,
    WorkerState,
    ask_to_stop,
    by_pid,
    counted_reload,
    counted_restarts,
    exit_text,
    occupant,
    with_slot,
    with_worker,
    workers_text,
)

Result = tuple[SupervisorState, list[Action]]
MIB = 1024 * 1024
# After SIGABRT faulthandler writes every thread's stack, then the default action ends it.
ABORT_GRACE_S = 5.0


def status_text(state: SupervisorState) -> str:
    """One line for sd_notify STATUS and the logs: phase, worker count, generation."""
    ready = sum(1 for r in state.workers.values() if r.state is WorkerState.READY)
    phase, generation = state.phase.value, state.generation
    return f"{phase}: {ready} of {state.desired} workers ready (generation {generation})"


def request_reload(state: SupervisorState, reason: str, now: float) -> Result:
    """Start a reload now if the fleet is serving, queue it while one is under way."""
    if state.phase is Phase.SERVING:
        generation = state.last_generation + 1
        message = f"{reason}: loading the config for generation {generation}"
        state = replace(state, queued_reload=None, last_reload=ReloadRecord(now, reason))
        return state, [Log(logging.INFO, message), Notify("reloading"), LoadGeneration(generation)]
    if state.phase in (Phase.BOOTING, Phase.RELOADING):
        message = f"{reason}: reload queued until generation {state.generation} is ready"
        return replace(state, queued_reload=reason), [Log(logging.INFO, message)]
    return state, [Log(logging.WARNING, f"{reason}: reload ignored while {state.phase.value}")]


def generation_loaded(state: SupervisorState, event: GenerationLoaded) -> Result:
    if state.phase is not Phase.SERVING or event.generation <= state.last_generation:
        return state, [DropGeneration(event.generation)]
    rollback = Rollback(state.generation, state.policy, state.desired)
    last = state.last_reload
    state = replace(
        state,
        last_reload=last and replace(last, generation=event.generation),
        generation=event.generation,
        last_generation=event.generation,
        policy=event.policy,
        slots={number: SlotRecord() for number in range(event.workers)},
        phase=Phase.RELOADING,
        rollback=rollback,
        template_due=0.0,
        template_failures=0,
    )
    message = f"generation {event.generation}: starting {workers_text(event.workers)}"
    return state, [Log(logging.INFO, message)]


def generation_failed(state: SupervisorState, event: GenerationFailed, now: float) -> Result:
    message = f"reload failed: {event.reason}; generation {state.generation} keeps serving"
    state = counted_reload(state, "failed", now, event.reason)
    return state, [Log(logging.ERROR, message), Notify("ready", status_text(state))]


def promote_ready(state: SupervisorState, now: float) -> Result:
    """Once every slot has a ready occupant: announce the first start, or commit a reload."""
    if state.phase not in (Phase.BOOTING, Phase.RELOADING):
        return state, []
    for slot in state.slots:
        record = occupant(state, slot)
        if record is None or record.state is not WorkerState.READY:
            return state, []
    if state.phase is Phase.BOOTING:
        return _first_ready(replace(state, phase=Phase.SERVING))
    state = counted_reload(replace(state, phase=Phase.SERVING, rollback=None), "ok", now)
    message = f"generation {state.generation} ready; retiring the previous workers"
    actions: list[Action] = [
        Log(logging.INFO, message),
        CommitGeneration(state.generation),
        Notify("ready", status_text(state)),
    ]
    for record in by_pid(state):
        if record.generation != state.generation:
            if record.state is not WorkerState.DRAINING:
                state = counted_restarts(state, "reload")
            state, more = ask_to_stop(state, record, signal.SIGTERM, now)
            actions += more
    return state, actions


def _first_ready(state: SupervisorState) -> Result:
    actions: list[Action] = [
        Log(logging.INFO, f"serve ready ({workers_text(state.desired)})"),
        Notify("ready", status_text(state)),
    ]
    old = state.takeover_from
    if old is not None:
        # USR2: our workers serve; the old master may drain its own now.
        state = replace(state, takeover_from=None)
        actions += [
            Log(logging.INFO, f"upgrade: this master takes over; stopping the old master {old}"),
            SendSignal(old, signal.SIGTERM),
            Notify("mainpid"),
        ]
    return state, actions


def abort_reload(state: SupervisorState, now: float, why: str) -> Result:
    """A worker of the new generation died before READY (`why`): stop that generation,
    keep ours."""
    rollback = state.rollback
    if rollback is None:
        return state, []
    failed = state.generation
    detail = f"generation {failed} failed to boot: {why}"
    state = replace(
        counted_reload(state, "failed", now, detail),
        generation=rollback.generation,
        policy=rollback.policy,
        phase=Phase.SERVING,
        rollback=None,
        # The generation that serves on may need its template again (preload.converge).
        template_due=0.0,
    )
    message = f"generation {failed} failed to boot; generation {rollback.generation} keeps serving"
    actions: list[Action] = [Log(logging.ERROR, message), DropGeneration(failed)]
    for record in by_pid(state):
        if record.generation == failed:
            state, more = ask_to_stop(state, record, signal.SIGTERM, now)
            actions += more
    # Slots whose old worker died during the attempt get a fresh one.
    slots = {
        number: SlotRecord(due=None if occupant(state, number) else now)
        for number in range(rollback.desired)
    }
    state = replace(state, slots=slots)
    return state, [*actions, Notify("ready", status_text(state))]


def retire_over_limits(state: SupervisorState, now: float) -> Result:
    """While serving, replace one worker that is over max_requests or max_worker_memory."""
    if state.phase is not Phase.SERVING:
        return state, []
    if any(record.state is WorkerState.RETIRING for record in state.workers.values()):
        return state, []
    for record in by_pid(state):
        if record.state is not WorkerState.READY or record.generation != state.generation:
            continue
        over = _over_limit(state.policy, record)
        if over is not None and record.slot in state.slots:
            kind, reason = over
            state = counted_restarts(state, kind)
            state = with_worker(state, replace(record, state=WorkerState.RETIRING))
            state = with_slot(state, record.slot, replace(state.slots[record.slot], due=now))
            message = f"worker {record.pid} {reason}; starting its replacement"
            return state, [Log(logging.INFO, message)]
    return state, []


def _over_limit(policy: Policy, record: WorkerRecord) -> tuple[str, str] | None:
    """(restart reason, log text) for a worker over one of its limits."""
    if record.request_limit and record.requests >= record.request_limit:
        served, most = record.requests, record.request_limit
        return "max_requests", f"served {served} requests (max_requests {most})"
    limit = policy.max_worker_memory
    if limit is not None and record.rss > limit:
        return "memory", (
            f"uses {record.rss / MIB:.1f} MiB of memory (max_worker_memory {limit / MIB:.1f} MiB)"
        )
    return None


def finish_retirements(state: SupervisorState, now: float) -> Result:
    """Drain each retiring worker whose slot has a ready occupant again (or is gone)."""
    actions: list[Action] = []
    for record in by_pid(state):
        if record.state is not WorkerState.RETIRING:
            continue
        if record.slot in state.slots:
            successor = occupant(state, record.slot)
            if successor is None or successor.state is not WorkerState.READY:
                continue
            message = f"worker {successor.pid} replaces worker {record.pid}"
            actions.append(Log(logging.INFO, message))
        state, more = ask_to_stop(state, record, signal.SIGTERM, now)
        actions += more
    return state, actions


def is_judged(record: WorkerRecord) -> bool:
    """Whether a silent loop in this worker means it is blocked: it serves, or it drains
    after it was ready (the worker's tick, and so its heartbeat, runs through the drain)."""
    if signal.SIGABRT in record.signals_sent or signal.SIGKILL in record.signals_sent:
        return False
    if record.state is WorkerState.DRAINING:
        return record.ready_at is not None
    return record.state in SERVING_STATES


def abort_silent(state: SupervisorState, now: float) -> Result:
    """SIGABRT each serving or draining worker whose loop sent no heartbeat for
    worker_timeout: a draining worker with a blocked loop would otherwise hold its
    requests until the end of graceful_timeout, and die without a stack dump."""
    actions: list[Action] = []
    timeout = state.policy.worker_timeout_s
    for record in by_pid(state):
        silent = now - record.last_heartbeat
        if not is_judged(record) or silent < timeout:
            continue
        kill_at = now + ABORT_GRACE_S
        aborted = replace(
            record,
            state=WorkerState.DRAINING,
            kill_at=kill_at if record.kill_at is None else min(record.kill_at, kill_at),
            signals_sent=record.signals_sent | {signal.SIGABRT},
        )
        state = with_worker(state, aborted)
        if record.state is not WorkerState.DRAINING:
            # A draining worker was already replaced (or its slot removed).
            state = counted_restarts(state, "timeout")
        slot = state.slots.get(record.slot)
        if (
            slot is not None
            and record.generation == state.generation
            and occupant(state, record.slot) is None
        ):
            state = with_slot(state, record.slot, replace(slot, due=now))
        message = (
            f"worker {record.pid} sent no heartbeat for {silent:.1f}s (worker_timeout "
            f"{timeout:g}s): its event loop is blocked; SIGABRT dumps its stack"
        )
        actions += [Log(logging.ERROR, message), SendSignal(record.pid, signal.SIGABRT)]
        # A stopped worker (SIGSTOP) keeps SIGABRT pending and would hold its clients for
        # the whole grace: SIGCONT lets it dump and die now (a running one ignores it).
        actions.append(SendSignal(record.pid, signal.SIGCONT))
    return state, actions


def request_upgrade(state: SupervisorState) -> Result:
    if state.phase is not Phase.SERVING:
        return state, [Log(logging.WARNING, f"SIGUSR2 ignored while {state.phase.value}")]
    if state.upgrade_pid is not None:
        message = f"SIGUSR2 ignored: new master {state.upgrade_pid} is taking over"
        return state, [Log(logging.WARNING, message)]
    message = "SIGUSR2: starting a new master on the same sockets"
    return state, [Log(logging.INFO, message), StartUpgrade()]


def upgrade_result(state: SupervisorState, event: UpgradeStarted | UpgradeFailed) -> Result:
    if isinstance(event, UpgradeFailed):
        message = f"upgrade failed: {event.reason}; this master keeps serving"
        return state, [Log(logging.ERROR, message)]
    message = f"upgrade: new master {event.pid} started; it stops this one once it serves"
    return replace(state, upgrade_pid=event.pid), [Log(logging.INFO, message)]


def upgrade_exited(state: SupervisorState, event: ChildExited) -> Result:
    """The new master died before it stopped us."""
    state = replace(state, upgrade_pid=None)
    message = f"upgrade failed: new master {event.pid} {exit_text(event.exitcode)}"
    if state.phase not in RUNNING:
        return state, [Log(logging.WARNING, message)]
    return state, [Log(logging.ERROR, f"{message}; this master keeps serving"), AbandonUpgrade()]
