"""Event scripts for the supervisor's pure core: events in, actions out, no processes."""

from __future__ import annotations

import logging
import signal

import pytest

from serve.server.channel import WorkerBootFailed, WorkerHeartbeat
from serve.supervisor.actions import Halt, Log, Spawn
from serve.supervisor.events import MasterStarted, SpawnFailed, WorkerMessageReceived
from serve.supervisor.fleet import (
    BACKOFF_MAX_S,
    QUIT_GRACE_S,
    Phase,
    WorkerState,
    backoff_delay,
    exit_text,
)
from serve.supervisor.state import STABLE_READY_S, next_deadline, step
from tests.unit.supervisor.step_script import POLICY, Script, halts, messages, signals, spawns


def test_start_spawns_one_worker_per_slot() -> None:
    script = Script(workers=3)
    actions = script.feed(MasterStarted())
    assert spawns(actions) == [Spawn(0, 1), Spawn(1, 1), Spawn(2, 1)]
    assert "worker 100 booting (gen 1)" in messages(actions)
    assert [r.state for r in script.state.workers.values()] == [WorkerState.STARTING] * 3
    assert script.phase() is Phase.BOOTING


def test_serve_ready_is_logged_once_when_every_worker_is_ready() -> None:
    script = Script(workers=2)
    script.feed(MasterStarted())
    first = script.ready(100)
    assert messages(first) == ["worker 100 ready"]
    second = script.ready(101)
    assert messages(second) == ["worker 101 ready", "serve ready (2 workers)"]
    again = script.ready(101) + script.feed(WorkerMessageReceived(100, WorkerHeartbeat(7, 1)))
    assert messages(again) == []
    assert script.state.workers[100].requests == 7


def test_a_ready_worker_that_dies_is_replaced_in_its_slot_at_once() -> None:
    script = Script(workers=2)
    script.start_serving()
    actions = script.exited(101, -signal.SIGKILL, after=STABLE_READY_S)
    assert messages(actions)[0] == "worker 101 killed by SIGKILL"
    assert spawns(actions) == [Spawn(1, 1)]
    assert script.pids() == [100, 102]
    assert script.state.workers[102].slot == 1


@pytest.mark.parametrize("code", [3, 4])
def test_boot_failure_at_first_start_stops_the_others_and_halts(code: int) -> None:
    script = Script(workers=2)
    script.feed(MasterStarted())
    failed = script.feed(WorkerMessageReceived(100, WorkerBootFailed(code, "no module 'x'")))
    assert messages(failed) == ["worker 100 failed to boot: no module 'x'"]
    actions = script.exited(100, code)
    assert f"worker 100 exited with code {code}" in messages(actions)
    assert spawns(actions) == []
    assert signals(actions) == [(101, signal.SIGTERM)]
    assert halts(actions) == []
    assert halts(script.exited(101, 0)) == [Halt(code)]
    assert script.phase() is Phase.HALTED


def test_boot_failure_halts_even_if_the_others_never_exit_on_their_own() -> None:
    script = Script(workers=2)
    script.feed(MasterStarted())
    script.exited(100, 4)
    assert next_deadline(script.state) == script.now + QUIT_GRACE_S
    assert signals(script.tick(QUIT_GRACE_S)) == [(101, signal.SIGKILL)]
    assert halts(script.exited(101, -signal.SIGKILL)) == [Halt(4)]


def test_a_crash_that_is_not_a_boot_error_is_retried_at_first_start() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    actions = script.exited(100, 1)
    assert halts(actions) == []
    assert spawns(script.tick(backoff_delay(1))) == [Spawn(0, 1)]


def test_death_before_ready_after_first_start_backs_off_exponentially() -> None:
    script = Script(workers=1)
    script.start_serving()
    assert spawns(script.exited(100, 1, after=STABLE_READY_S)) == [Spawn(0, 1)]
    delays = []
    for pid in range(101, 111):
        actions = script.exited(pid, 4, after=0.01)
        assert halts(actions) == []
        assert spawns(actions) == []
        deadline = next_deadline(script.state)
        assert deadline is not None
        delays.append(round(deadline - script.now, 6))
        assert spawns(script.tick(deadline - script.now - 0.001)) == []
        assert spawns(script.tick(0.001)) == [Spawn(0, 1)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, BACKOFF_MAX_S, BACKOFF_MAX_S, 10.0]


def test_backoff_resets_after_a_worker_stays_ready() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.exited(100, 1, after=STABLE_READY_S)
    script.exited(101, 1)
    script.tick(backoff_delay(1))
    script.exited(102, 1)
    script.tick(backoff_delay(2))
    script.ready(103)
    briefly = script.exited(103, 1, after=STABLE_READY_S / 2)
    assert spawns(briefly) == []
    assert script.state.slots[0].failures == 3
    assert spawns(script.tick(backoff_delay(3))) == [Spawn(0, 1)]
    script.ready(104)
    assert spawns(script.exited(104, 1, after=STABLE_READY_S)) == [Spawn(0, 1)]
    assert script.state.slots[0].failures == 0


def test_a_worker_that_never_gets_ready_is_killed_after_boot_timeout() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    assert next_deadline(script.state) == script.now + POLICY.boot_timeout_s
    actions = script.tick(POLICY.boot_timeout_s)
    assert signals(actions) == [(100, signal.SIGKILL)]
    assert messages(actions) == ["worker 100 not ready after 60s; killing it"]
    assert spawns(script.exited(100, -signal.SIGKILL)) == []
    assert spawns(script.tick(backoff_delay(1))) == [Spawn(0, 1)]


def test_ttin_adds_a_worker_and_ttou_retires_one_but_never_the_last() -> None:
    script = Script(workers=1)
    script.start_serving()
    up = script.signal(signal.SIGTTIN)
    assert spawns(up) == [Spawn(1, 1)]
    assert "SIGTTIN: scaling up to 2 workers" in messages(up)
    script.ready(101)
    down = script.signal(signal.SIGTTOU)
    assert signals(down) == [(101, signal.SIGTERM)]
    assert script.state.desired == 1
    assert spawns(script.exited(101, 0)) == []
    last = script.signal(signal.SIGTTOU)
    assert signals(last) == []
    assert messages(last) == ["SIGTTOU: keeping the last worker"]
    assert script.pids() == [100]


def test_ttou_then_ttin_does_not_confuse_the_retiring_worker_with_the_new_one() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.signal(signal.SIGTTOU)
    assert spawns(script.signal(signal.SIGTTIN)) == [Spawn(1, 1)]
    assert spawns(script.exited(101, 0)) == []
    assert script.pids() == [100, 102]


def test_spawn_failure_is_retried_with_backoff() -> None:
    script = Script(workers=1)
    state, actions = step(script.state, MasterStarted(), script.now)
    assert spawns(actions) == [Spawn(0, 1)]
    script.state = state
    failed = script.feed(SpawnFailed(0, 1, "fork: Resource temporarily unavailable"))
    assert "retrying in 0.1s" in messages(failed)[0]
    assert spawns(script.tick(backoff_delay(1))) == [Spawn(0, 1)]


def test_unknown_pids_and_garbage_change_nothing() -> None:
    script = Script(workers=1)
    script.start_serving()
    before = script.state
    assert script.ready(999) == []
    assert script.signal(signal.SIGCHLD) == []
    assert script.heartbeat(999, requests=5) == []
    assert script.state == before


def test_an_adopted_orphan_is_reaped_and_logged_and_changes_nothing() -> None:
    script = Script(workers=1)
    script.start_serving()
    before = script.state
    actions = script.exited(999, 0)
    assert actions == [Log(logging.INFO, "reaped process 999, not a worker (exited with code 0)")]
    assert script.state == before


def test_nothing_happens_after_halt() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.signal(signal.SIGQUIT)
    assert halts(script.exited(100, 0)) == [Halt(0)]
    assert script.signal(signal.SIGTERM) == []
    assert script.tick(100.0) == []
    assert script.signal(signal.SIGHUP) == []


def test_an_unexpected_exit_is_a_warning_and_a_requested_one_is_not() -> None:
    script = Script(workers=2)
    script.start_serving()
    crashed = script.exited(100, 1, after=STABLE_READY_S)
    assert next(a.level for a in crashed if isinstance(a, Log)) == logging.WARNING
    script.signal(signal.SIGTERM)
    stopped = script.exited(101, 0)
    assert [a.level for a in stopped if isinstance(a, Log)] == [logging.INFO]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (4, "exited with code 4"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGTERM, "killed by SIGTERM"),
    ],
)
def test_exit_text(code: int, text: str) -> None:
    assert exit_text(code) == text
