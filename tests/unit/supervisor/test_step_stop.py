"""Event scripts for stopping: TERM drains, INT hurries, QUIT quits, deadlines kill."""

from __future__ import annotations

import logging
import signal

from serve.supervisor.actions import Halt, Log
from serve.supervisor.events import MasterStarted
from serve.supervisor.fleet import QUIT_GRACE_S, STOP_MARGIN_S, WorkerState
from serve.supervisor.state import next_deadline
from tests.unit.supervisor.step_script import POLICY, Script, halts, messages, signals, spawns


def test_sigterm_asks_each_worker_to_drain_and_sigint_then_hurries_them() -> None:
    script = Script(workers=2)
    script.start_serving()
    actions = script.signal(signal.SIGTERM)
    assert "shutting down (graceful)" in messages(actions)
    assert signals(actions) == [(100, signal.SIGTERM), (101, signal.SIGTERM)]
    assert [r.state for r in script.state.workers.values()] == [WorkerState.DRAINING] * 2
    hurried = script.signal(signal.SIGTERM) + script.signal(signal.SIGINT)
    assert signals(hurried) == [(100, signal.SIGQUIT), (101, signal.SIGQUIT)]


def test_graceful_stop_never_signals_twice_and_exits_zero() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.signal(signal.SIGTERM)
    again = script.signal(signal.SIGTERM) + script.tick(1.0)
    assert signals(again) == []
    first = script.exited(100, 0)
    assert spawns(first) == []
    assert halts(first) == []
    assert "worker 100 exited with code 0" in messages(first)
    assert halts(script.exited(101, 0)) == [Halt(0)]


def test_graceful_timeout_plus_margin_escalates_to_sigkill() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.signal(signal.SIGTERM)
    limit = POLICY.graceful_timeout_s + STOP_MARGIN_S
    assert next_deadline(script.state) == script.now + limit
    assert signals(script.tick(limit - 0.01)) == []
    killed = script.tick(0.01)
    assert signals(killed) == [(100, signal.SIGKILL), (101, signal.SIGKILL)]
    assert "worker 100 did not stop in time; killing it" in messages(killed)
    assert signals(script.tick(60.0)) == []
    assert next_deadline(script.state) is None
    script.exited(100, -signal.SIGKILL)
    assert halts(script.exited(101, -signal.SIGKILL)) == [Halt(0)]


def test_second_sigint_during_graceful_stop_quits_immediately() -> None:
    script = Script(workers=2)
    script.start_serving()
    first = script.signal(signal.SIGINT)
    assert signals(first) == [(100, signal.SIGTERM), (101, signal.SIGTERM)]
    assert messages(first)[-1] == "press Ctrl-C again to stop at once"
    second = script.signal(signal.SIGINT)
    assert "shutting down (immediate)" in messages(second)
    assert signals(second) == [(100, signal.SIGQUIT), (101, signal.SIGQUIT)]
    assert signals(script.signal(signal.SIGINT)) == []
    assert next_deadline(script.state) == script.now + QUIT_GRACE_S
    killed = script.tick(QUIT_GRACE_S)
    assert signals(killed) == [(100, signal.SIGKILL), (101, signal.SIGKILL)]


def test_sigquit_quits_workers_kills_stragglers_and_exits_zero() -> None:
    script = Script(workers=2)
    script.start_serving()
    actions = script.signal(signal.SIGQUIT)
    assert messages(actions) == ["shutting down (immediate)"]
    assert signals(actions) == [(100, signal.SIGQUIT), (101, signal.SIGQUIT)]
    script.exited(100, 0)
    assert signals(script.tick(QUIT_GRACE_S)) == [(101, signal.SIGKILL)]
    assert halts(script.exited(101, -signal.SIGKILL)) == [Halt(0)]


def test_sigterm_while_workers_boot_stops_them_promptly() -> None:
    script = Script(workers=2)
    script.feed(MasterStarted())
    script.ready(100)
    actions = script.signal(signal.SIGTERM)
    assert signals(actions) == [(100, signal.SIGTERM), (101, signal.SIGTERM)]
    # The ready one may drain; the booting one has nothing to finish.
    assert script.state.workers[101].kill_at == script.now + QUIT_GRACE_S
    assert signals(script.tick(QUIT_GRACE_S)) == [(101, signal.SIGKILL)]
    assert "serve ready" not in " ".join(messages(script.ready(101)))
    script.exited(101, -signal.SIGKILL)
    assert halts(script.exited(100, 0)) == [Halt(0)]


def test_a_booting_worker_that_our_stop_signal_killed_is_no_warning() -> None:
    script = Script(workers=2)
    script.feed(MasterStarted())
    script.ready(100)
    script.signal(signal.SIGTERM)
    # Killed by our SIGTERM before its loop could catch it: a stop, as asked.
    booting = script.exited(101, -signal.SIGTERM)
    assert [(a.level, a.message) for a in booting if isinstance(a, Log)] == [
        (logging.INFO, "worker 101 stopped while booting (killed by SIGTERM)")
    ]
    # A ready worker catches SIGTERM and drains: dying of it is not what was asked.
    ready = script.exited(100, -signal.SIGTERM)
    assert [a.level for a in ready if isinstance(a, Log)] == [logging.WARNING]
