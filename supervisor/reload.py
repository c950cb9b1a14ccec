"""Pure decisions that replace workers: reloads and retirements.

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
A blocked worker is replaced by blocked.py, the master itself (USR2) by takeover.py.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.supervisor import takeover
from serve.supervisor.actions import (
    Action,
    CommitGeneration,
    DropGeneration,
    LoadGeneration,
    Log,
    Notify,
)
from serve.supervisor.events import GenerationFailed, GenerationLoaded
from serve.supervisor.fleet import (
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
    occupant,
    status_text,
    with_slot,
    with_worker,
    workers_text,
)

Result = tuple[SupervisorState, list[Action]]
MIB = 1024 * 1024


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
    state, more = takeover.take_over(state)
    return state, actions + more


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
