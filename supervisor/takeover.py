"""Pure decisions of a USR2 upgrade: a new master takes over from this one.

Rules: no IO and no os calls, like state.py, which calls these from step(); upgrade.py
executes the new master and hands it the sockets. Two sides of one upgrade:
- The old master starts one new master at a time, and only while serving. The new master
  is its child until it exits: if it dies before it stopped us, we keep serving and take
  the pidfile back (AbandonUpgrade).
- The new master, once its first generation is ready, sends SIGTERM to the old one, which
  then drains like on any stop.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import replace

from serve.supervisor.actions import AbandonUpgrade, Action, Log, Notify, SendSignal, StartUpgrade
from serve.supervisor.events import ChildExited, UpgradeFailed, UpgradeStarted
from serve.supervisor.fleet import RUNNING, Phase, SupervisorState, exit_text

Result = tuple[SupervisorState, list[Action]]


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


def take_over(state: SupervisorState) -> Result:
    """Our first generation is ready: after a USR2 the old master may drain its own now."""
    old = state.takeover_from
    if old is None:
        return state, []
    return replace(state, takeover_from=None), [
        Log(logging.INFO, f"upgrade: this master takes over; stopping the old master {old}"),
        SendSignal(old, signal.SIGTERM),
        Notify("mainpid"),
    ]
