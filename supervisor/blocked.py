"""Pure decisions about workers whose event loop is blocked.

Rules: no IO and no os calls, like state.py, which calls abort_silent() on every Tick. A
worker whose loop sent no heartbeat for worker_timeout serves nobody any more: it gets
SIGABRT (faulthandler dumps every thread's stack) and its slot a new worker at once. A
draining worker is judged the same way while the fleet runs (its replacement already
exists). After ABORT_GRACE_S the stop deadline sends SIGKILL.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.supervisor.actions import Action, Log, SendSignal
from serve.supervisor.fleet import (
    SERVING_STATES,
    SupervisorState,
    WorkerRecord,
    WorkerState,
    by_pid,
    counted_restarts,
    occupant,
    with_slot,
    with_worker,
)

Result = tuple[SupervisorState, list[Action]]
# After SIGABRT faulthandler writes every thread's stack, then the default action ends it.
ABORT_GRACE_S = 5.0


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
