"""Pure decisions about preload templates: when one starts, waits, fails and goes away.

Rules: no IO and no os calls, like state.py, which calls these from step(). With
`preload: true` each generation has one template process: the master forks it, it imports
the app and then forks that generation's workers (template.py). So:
- The current generation gets a template as soon as it needs one; its workers (first
  boot, reload, respawns, TTIN) are only forked once the template reported the app
  imported, and a template still loading after boot_timeout is killed.
- A template that dies before it imported the app fails its generation like a worker that
  cannot boot: at first start exit code 4 (3) halts the master, during a reload the
  previous generation keeps serving (reload.abort_reload). One that dies later is started
  again with the workers' backoff; it imports the app afresh.
- A template serves only its own generation. Once another generation serves alone, or the
  master stops, it gets one SIGTERM (it holds no connections: there is nothing to drain)
  and SIGKILL if it is still there after QUIT_GRACE_S.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.server.channel import WorkerBootFailed, WorkerReady
from serve.server.exitcodes import BOOT_ERROR
from serve.supervisor import reload
from serve.supervisor.actions import Action, Log, SendSignal, StartTemplate
from serve.supervisor.events import (
    ChildExited,
    TemplateReported,
    TemplateStarted,
    TemplateStartFailed,
)
from serve.supervisor.fleet import (
    QUIT_GRACE_S,
    RUNNING,
    Phase,
    SupervisorState,
    TemplateRecord,
    backoff_delay,
    exit_text,
    occupant,
    with_slot,
)
from serve.supervisor.stopping import BOOT_ATTEMPTS_MAX, HALT_CODES, halt_boot

Result = tuple[SupervisorState, list[Action]]


def template_of(state: SupervisorState, generation: int) -> TemplateRecord | None:
    for record in state.templates.values():
        if record.generation == generation and signal.SIGTERM not in record.signals_sent:
            return record
    return None


def may_spawn(state: SupervisorState) -> bool:
    """Whether the current generation's workers can be forked now."""
    if not state.policy.preload:
        return True
    record = template_of(state, state.generation)
    return record is not None and record.ready_at is not None


def deadlines(state: SupervisorState) -> list[float]:
    times = [
        record.kill_at
        for record in state.templates.values()
        if record.kill_at is not None and signal.SIGKILL not in record.signals_sent
    ]
    if _needs_template(state) and state.template_due is not None:
        times.append(state.template_due)
    return times


def _needs_template(state: SupervisorState) -> bool:
    return (
        state.phase in RUNNING
        and state.policy.preload
        and template_of(state, state.generation) is None
    )


def _with(state: SupervisorState, record: TemplateRecord) -> SupervisorState:
    return replace(state, templates={**state.templates, record.pid: record})


def started(state: SupervisorState, event: TemplateStarted, now: float) -> Result:
    record = TemplateRecord(
        event.pid, event.generation, now, kill_at=now + state.policy.boot_timeout_s
    )
    message = f"template {event.pid} importing the app (gen {event.generation})"
    return _with(state, record), [Log(logging.INFO, message)]


def start_failed(state: SupervisorState, event: TemplateStartFailed, now: float) -> Result:
    return _retry(state, f"cannot start a template: {event.reason}", now)


def reported(state: SupervisorState, event: TemplateReported, now: float) -> Result:
    record = state.templates.get(event.pid)
    if record is None:
        return state, []
    message = event.message
    if isinstance(message, WorkerBootFailed):
        text = f"template {event.pid} cannot load the app: {message.message}"
        state = _with(state, replace(record, boot_error=message.message))
        return state, [Log(logging.ERROR, text)]
    if not isinstance(message, WorkerReady) or record.ready_at is not None:
        return state, []
    took = now - record.started_at
    kill_at = record.kill_at if record.signals_sent else None
    state = _with(state, replace(record, ready_at=now, kill_at=kill_at))
    state = replace(state, template_failures=0)
    text = f"template {event.pid} imported the app in {took:.2f}s (gen {record.generation})"
    return state, [Log(logging.INFO, text)]


def exited(state: SupervisorState, event: ChildExited, now: float) -> Result:
    record = state.templates[event.pid]
    state = replace(state, templates={p: r for p, r in state.templates.items() if p != event.pid})
    expected = signal.SIGTERM in record.signals_sent
    how = "stopped" if expected else exit_text(event.exitcode)
    text = f"template {event.pid} (gen {record.generation}) {how}"
    if expected or state.phase not in RUNNING or record.generation != state.generation:
        level = logging.INFO if expected else logging.WARNING
        return state, [Log(level, text)]
    actions: list[Action] = [Log(logging.WARNING, text)]
    if record.ready_at is None and state.phase is Phase.RELOADING:
        state, more = reload.abort_reload(state, now, record.boot_error or text)
        return state, actions + more
    if record.ready_at is None and state.phase is Phase.BOOTING:
        if event.exitcode in HALT_CODES:
            why = f": {record.boot_error}" if record.boot_error else ""
            reason = f"the app cannot be loaded (exit code {event.exitcode}){why}"
            state, more = halt_boot(state, event.exitcode, reason)
            return state, actions + more
        if state.template_failures + 1 >= BOOT_ATTEMPTS_MAX:
            reason = f"templates died {BOOT_ATTEMPTS_MAX} times before importing the app"
            state, more = halt_boot(state, BOOT_ERROR, reason)
            return state, actions + more
    # Forks it was asked for and never answered: their slots ask the next template.
    for number, slot in state.slots.items():
        if slot.due is None and occupant(state, number) is None:
            state = with_slot(state, number, replace(slot, due=now))
    state, more = _retry(state, f"generation {state.generation} needs a new template", now)
    return state, actions + more


def _retry(state: SupervisorState, reason: str, now: float) -> Result:
    failures = state.template_failures + 1
    delay = backoff_delay(failures)
    state = replace(state, template_failures=failures, template_due=now + delay)
    return state, [Log(logging.WARNING, f"{reason}; next template in {delay:.1f}s")]


def converge(state: SupervisorState, now: float) -> Result:
    """Start the template the current generation lacks, retire the others, kill the late."""
    actions: list[Action] = []
    due = state.template_due
    if _needs_template(state) and due is not None and due <= now:
        state = replace(state, template_due=None)
        actions.append(StartTemplate(state.generation))
    state = _watch_forks(state, now)
    for pid in sorted(state.templates):
        record = state.templates[pid]
        retired = state.phase not in RUNNING or (
            state.phase is Phase.SERVING and record.generation != state.generation
        )
        if retired and signal.SIGTERM not in record.signals_sent:
            stopped = replace(
                record,
                kill_at=now + QUIT_GRACE_S,
                signals_sent=record.signals_sent | {signal.SIGTERM},
            )
            state = _with(state, stopped)
            actions.append(SendSignal(pid, signal.SIGTERM))
        record = state.templates[pid]
        late = record.kill_at is not None and record.kill_at <= now
        if late and signal.SIGKILL not in record.signals_sent:
            state, more = _kill(state, record)
            actions += more
    return state, actions


def _watch_forks(state: SupervisorState, now: float) -> SupervisorState:
    """Give the current template boot_timeout to answer the forks it was asked for.

    A slot without an occupant and without a due time waits for an answer. A template that
    gives none is stuck (a fork from a process whose app started threads at import can hang
    on a lock one of them held), and killing it restarts it and asks again.
    """
    record = template_of(state, state.generation)
    if record is None or record.ready_at is None or record.signals_sent:
        return state
    waiting = any(
        slot.due is None and occupant(state, number) is None for number, slot in state.slots.items()
    )
    if not waiting:
        kill_at = None
    elif record.kill_at is None:
        kill_at = now + state.policy.boot_timeout_s
    else:
        return state
    return _with(state, replace(record, kill_at=kill_at))


def _kill(state: SupervisorState, record: TemplateRecord) -> Result:
    timeout = state.policy.boot_timeout_s
    if record.signals_sent:
        message = f"template {record.pid} did not stop in time; killing it"
    elif record.ready_at is None:
        message = f"template {record.pid} has not imported the app after {timeout:g}s; killing it"
    else:
        message = f"template {record.pid} answered no fork request for {timeout:g}s; killing it"
    record = replace(record, signals_sent=record.signals_sent | {signal.SIGKILL})
    return _with(state, record), [
        Log(logging.WARNING, message),
        SendSignal(record.pid, signal.SIGKILL),
    ]
