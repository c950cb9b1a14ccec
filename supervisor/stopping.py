"""How the master stops: the pure decisions behind TERM, INT and QUIT.

Rules: no IO and no os calls, like state.py, which dispatches those signals here and calls
end_delay() on every Tick.
- TERM (and a first INT) stops gracefully: workers drain for graceful_timeout. With a
  shutdown_delay, a master whose /readyz may have answered 200 (some worker serves) first
  serves on for that long in phase DELAYING with /readyz at 503, so load balancers stop
  sending before any connection is refused. With no serving worker there is nobody to
  deregister, and the drain starts at once.
- One more INT stops waiting: DELAYING drains now, STOPPING becomes QUITTING.
- QUIT stops at once: workers get SIGQUIT.
- The service manager hears STOPPING=1 once, when the first of these arrives.
- When the drain starts the master closes its listeners, as every worker does on its TERM:
  a new connection is refused at once instead of waiting in a backlog nobody accepts from
  until the master exits and the kernel resets it. A new master (USR2) or a new generation
  holds its own copies, so only a stop closes them.
- At first start, an app that cannot boot (exit code 3 or 4 from a worker or a preload
  template, or too many deaths before READY) stops the master with that code.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.server.exitcodes import APP_LOAD_ERROR, BOOT_ERROR
from serve.supervisor.actions import Action, Log, Notify, SendSignal, StopListening
from serve.supervisor.fleet import (
    RUNNING,
    STOPPING,
    Phase,
    SupervisorState,
    WorkerState,
    by_pid,
    counted_restarts,
    is_ready,
    with_worker,
)

Result = tuple[SupervisorState, list[Action]]

# At first start, this many deaths before READY in one slot mean the app cannot boot.
BOOT_ATTEMPTS_MAX = 5
# Exit codes that mean "this app cannot boot": at first start the master halts on them.
HALT_CODES = frozenset({BOOT_ERROR, APP_LOAD_ERROR})
GRACEFUL = "shutting down (graceful)"
IMMEDIATE = "shutting down (immediate)"


def begin_stop(state: SupervisorState, phase: Phase, message: str) -> Result:
    actions: list[Action] = [Log(logging.INFO, message), StopListening()]
    if state.phase in RUNNING and state.phase is not Phase.DELAYING:
        actions.append(Notify("stopping"))
    return replace(state, phase=phase, stop_at=None), actions


def handle_term(state: SupervisorState, now: float) -> Result:
    if state.phase in STOPPING or state.phase is Phase.DELAYING:
        return state, []
    delay = state.policy.shutdown_delay_s
    if delay > 0 and is_ready(state):
        message = f"{GRACEFUL} in {delay:g}s (shutdown_delay); /readyz answers 503 meanwhile"
        state = replace(state, phase=Phase.DELAYING, stop_at=now + delay)
        return state, [Log(logging.INFO, message), Notify("stopping")]
    return begin_stop(state, Phase.STOPPING, GRACEFUL)


def handle_int(state: SupervisorState, now: float) -> Result:
    # The operator pressed Ctrl-C once more while waiting: stop waiting.
    if state.phase is Phase.DELAYING:
        message = f"{GRACEFUL} without the rest of shutdown_delay"
        state, actions = begin_stop(state, Phase.STOPPING, message)
    elif state.phase is Phase.STOPPING:
        return begin_stop(state, Phase.QUITTING, IMMEDIATE)
    else:
        state, actions = handle_term(state, now)
    # Tell the one at the terminal what the next Ctrl-C does.
    if state.phase is Phase.DELAYING:
        actions.append(Log(logging.INFO, "press Ctrl-C again to drain now"))
    elif state.phase is Phase.STOPPING:
        actions.append(Log(logging.INFO, "press Ctrl-C again to stop at once"))
    return state, actions


def handle_quit(state: SupervisorState, now: float) -> Result:
    if state.phase is Phase.QUITTING:
        return state, []
    return begin_stop(state, Phase.QUITTING, IMMEDIATE)


def end_delay(state: SupervisorState, now: float) -> Result:
    """At the end of shutdown_delay, start the graceful drain."""
    if state.phase is not Phase.DELAYING or state.stop_at is None or now < state.stop_at:
        return state, []
    return begin_stop(state, Phase.STOPPING, f"shutdown_delay over; {GRACEFUL}")


def halt_boot(state: SupervisorState, code: int, reason: str) -> Result:
    """The first generation cannot boot: stop, and exit with `code` once everything is gone."""
    state = replace(state, phase=Phase.STOPPING, exit_code=code, exit_reason=reason)
    return state, [Log(logging.ERROR, f"{reason}; stopping"), Notify("stopping")]


def kill_overdue(state: SupervisorState, now: float) -> Result:
    """SIGKILL each worker past its kill_at: a boot timeout, or a stop that took too long."""
    actions: list[Action] = []
    for record in by_pid(state):
        if record.kill_at is None or record.kill_at > now:
            continue
        if signal.SIGKILL in record.signals_sent:
            continue
        if record.state is WorkerState.STARTING:
            timeout = state.policy.boot_timeout_s
            message = f"worker {record.pid} not ready after {timeout:g}s; killing it"
            state = counted_restarts(state, "timeout")
        elif signal.SIGABRT in record.signals_sent:
            message = f"worker {record.pid} is still there after SIGABRT; killing it"
        else:
            message = f"worker {record.pid} did not stop in time; killing it"
        killed = replace(record, signals_sent=record.signals_sent | {signal.SIGKILL})
        state = with_worker(state, killed)
        actions += [Log(logging.WARNING, message), SendSignal(record.pid, signal.SIGKILL)]
    return state, actions
