"""TTIN and TTOU: one worker more or fewer on a live master.

Rules: pure like state.py, which calls these from step(). Scaling changes the slots only
while the fleet is booting or serving; a later reload returns to the configured count.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from supervisor.actions import Action, Log
from supervisor.fleet import (
    Phase,
    SlotRecord,
    SupervisorState,
    ask_to_stop,
    occupant,
    with_slot,
    workers_text,
)

Result = tuple[SupervisorState, list[Action]]


def handle_ttin(state: SupervisorState, now: float) -> Result:
    if state.phase not in (Phase.BOOTING, Phase.SERVING):
        return state, [Log(logging.WARNING, f"SIGTTIN ignored while {state.phase.value}")]
    desired = state.desired + 1
    state = with_slot(state, state.desired, SlotRecord())
    return state, [Log(logging.INFO, f"SIGTTIN: scaling up to {workers_text(desired)}")]


def handle_ttou(state: SupervisorState, now: float) -> Result:
    if state.phase not in (Phase.BOOTING, Phase.SERVING):
        return state, [Log(logging.WARNING, f"SIGTTOU ignored while {state.phase.value}")]
    if state.desired <= 1:
        return state, [Log(logging.WARNING, "SIGTTOU: keeping the last worker")]
    slot = state.desired - 1
    slots = {number: record for number, record in state.slots.items() if number != slot}
    retired = occupant(state, slot)
    state = replace(state, slots=slots)
    actions: list[Action] = [
        Log(logging.INFO, f"SIGTTOU: scaling down to {workers_text(len(slots))}")
    ]
    if retired is not None:
        state, more = ask_to_stop(state, retired, signal.SIGTERM, now)
        actions += more
    return state, actions
