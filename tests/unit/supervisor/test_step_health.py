"""Event scripts for health: retirement by max_requests and memory, blocked loops, crash loops."""

from __future__ import annotations

import signal

from serve.supervisor.actions import Halt, ProbeHealth, Spawn
from serve.supervisor.blocked import ABORT_GRACE_S
from serve.supervisor.events import GenerationLoaded, HealthSampled, MasterStarted
from serve.supervisor.fleet import (
    CRASH_LOOP_FAILURES,
    STABLE_READY_S,
    Phase,
    Policy,
    WorkerState,
    is_live,
)
from serve.supervisor.reload import MIB
from serve.supervisor.state import BOOT_ATTEMPTS_MAX, next_deadline
from tests.unit.supervisor.step_script import (
    POLICY,
    Script,
    halts,
    messages,
    signals,
    spawns,
)

LIMITED = Policy(
    graceful_timeout_s=30.0,
    boot_timeout_s=60.0,
    worker_timeout_s=3.0,
    health_interval_s=1.0,
    max_worker_memory=100 * MIB,
)


def test_a_worker_at_max_requests_serves_on_until_its_replacement_is_ready() -> None:
    script = Script(workers=2)
    script.request_limit = 50
    script.start_serving()
    assert script.state.workers[100].request_limit == 50
    assert spawns(script.heartbeat(100, requests=49)) == []
    actions = script.heartbeat(100, requests=50)
    assert messages(actions)[0] == (
        "worker 100 served 50 requests (max_requests 50); starting its replacement"
    )
    assert spawns(actions) == [Spawn(0, 1)]
    assert signals(actions) == []
    assert script.state.workers[100].state is WorkerState.RETIRING
    # It keeps serving (and counting) while the new worker boots.
    assert signals(script.heartbeat(100, requests=80)) == []
    done = script.ready(102)
    assert "worker 102 replaces worker 100" in messages(done)
    assert signals(done) == [(100, signal.SIGTERM)]
    assert spawns(script.exited(100, 0)) == []
    assert script.pids() == [101, 102]


def test_one_retirement_at_a_time() -> None:
    script = Script(workers=2)
    script.request_limit = 10
    script.start_serving()
    script.heartbeat(100, requests=10)
    assert spawns(script.heartbeat(101, requests=10)) == []
    done = script.ready(102)
    assert signals(done) == [(100, signal.SIGTERM)]
    # With 100 out of the way, 101 is next.
    assert spawns(done) == [Spawn(1, 1)]
    assert script.state.workers[101].state is WorkerState.RETIRING


def test_a_retiring_worker_that_dies_is_not_replaced_twice() -> None:
    script = Script(workers=1)
    script.request_limit = 5
    script.start_serving()
    script.heartbeat(100, requests=5)
    assert script.pids() == [100, 101]
    died = script.exited(100, -signal.SIGKILL)
    assert messages(died)[0] == "worker 100 killed by SIGKILL"
    assert spawns(died) == []
    assert next_deadline(script.state) is not None
    assert spawns(script.tick(60.0)) == []


def test_a_worker_over_max_worker_memory_is_replaced_without_losing_capacity() -> None:
    script = Script(workers=1, policy=LIMITED)
    script.start_serving()
    script.rss[100] = 100 * MIB
    script.heartbeat(100, after=1.0)
    script.tick(0.0)
    assert script.state.workers[100].rss == 100 * MIB
    assert script.state.workers[100].state is WorkerState.READY
    script.rss[100] = 150 * MIB
    actions = script.heartbeat(100, after=1.0)
    assert messages(actions)[0] == (
        "worker 100 uses 150.0 MiB of memory (max_worker_memory 100.0 MiB); "
        "starting its replacement"
    )
    assert spawns(actions) == [Spawn(0, 1)]
    assert signals(script.ready(101)) == [(100, signal.SIGTERM)]


def test_the_health_probe_runs_every_interval_over_every_worker() -> None:
    script = Script(workers=2, policy=LIMITED)
    first = script.feed(MasterStarted())
    assert [a for a in first if isinstance(a, ProbeHealth)] == [ProbeHealth((100, 101))]
    assert next_deadline(script.state) == script.now + LIMITED.health_interval_s
    assert [a for a in script.tick(0.5) if isinstance(a, ProbeHealth)] == []
    later = script.tick(0.5)
    assert [a for a in later if isinstance(a, ProbeHealth)] == [ProbeHealth((100, 101))]
    script.feed(HealthSampled(((101, 42 * MIB), (999, 1))))
    assert script.state.workers[101].rss == 42 * MIB
    assert 999 not in script.state.workers


def test_no_retirement_while_reloading() -> None:
    script = Script(workers=1)
    script.request_limit = 5
    script.start_serving()
    script.signal(signal.SIGHUP)
    assert script.state.workers[100].state is WorkerState.READY
    assert spawns(script.heartbeat(100, requests=9)) == []
    assert script.state.workers[100].state is WorkerState.READY


def test_a_worker_without_heartbeat_is_aborted_for_its_stack_and_replaced_at_once() -> None:
    script = Script(workers=2, policy=LIMITED)
    script.start_serving()
    script.heartbeat(101, after=2.0)
    actions = script.tick(1.0)
    assert messages(actions)[0] == (
        "worker 100 sent no heartbeat for 3.0s (worker_timeout 3s): "
        "its event loop is blocked; SIGABRT dumps its stack"
    )
    assert signals(actions) == [(100, signal.SIGABRT), (100, signal.SIGCONT)]
    assert spawns(actions) == [Spawn(0, 1)]
    assert script.state.workers[100].state is WorkerState.DRAINING
    script.ready(102)
    script.heartbeat(101, after=ABORT_GRACE_S / 2)
    script.heartbeat(102)
    killed = script.tick(ABORT_GRACE_S / 2)
    assert "worker 100 is still there after SIGABRT; killing it" in messages(killed)
    assert (100, signal.SIGKILL) in signals(killed)
    died = script.exited(100, -signal.SIGKILL)
    assert messages(died) == ["worker 100 killed by SIGKILL"]
    assert spawns(died) == []
    assert script.pids() == [101, 102]


def test_heartbeats_keep_a_worker_alive_and_one_draining_at_stop_is_not_judged() -> None:
    script = Script(workers=1, policy=LIMITED)
    script.start_serving()
    for _ in range(5):
        assert signals(script.heartbeat(100, after=2.5)) == []
    script.signal(signal.SIGTERM)
    assert signals(script.tick(10.0)) == []


def test_a_worker_draining_after_a_reload_that_hangs_is_aborted_for_its_stack() -> None:
    script = Script(workers=1, policy=LIMITED)
    script.start_serving()
    script.signal(signal.SIGHUP)
    retired = script.ready(101)
    assert signals(retired) == [(100, signal.SIGTERM)]
    script.heartbeat(100, after=1.0)
    script.heartbeat(101, after=2.0)
    assert signals(script.heartbeat(101, after=0.5)) == []
    actions = script.heartbeat(101, after=0.5)
    assert messages(actions)[0].startswith("worker 100 sent no heartbeat for 3.0s")
    assert signals(actions) == [(100, signal.SIGABRT), (100, signal.SIGCONT)]
    assert spawns(actions) == []
    # Replaced once, by the reload; the abort of a drain replaces nobody.
    assert script.state.restarts == {"reload": 1}
    killed = script.heartbeat(101, after=ABORT_GRACE_S)
    assert signals(killed) == [(100, signal.SIGKILL)]


def test_a_retiring_worker_that_hangs_is_aborted_without_a_second_replacement() -> None:
    script = Script(workers=1, policy=LIMITED)
    script.request_limit = 3
    script.start_serving()
    script.heartbeat(100, requests=3)
    actions = script.tick(LIMITED.worker_timeout_s)
    assert signals(actions) == [(100, signal.SIGABRT), (100, signal.SIGCONT)]
    assert spawns(actions) == []


def test_a_slot_that_keeps_dying_before_ready_at_first_start_halts_with_3() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    pid = 100
    for _ in range(BOOT_ATTEMPTS_MAX - 1):
        assert halts(script.exited(pid, 1)) == []
        deadline = next_deadline(script.state)
        assert deadline is not None
        script.tick(deadline - script.now)
        pid += 1
    final = script.exited(pid, 1)
    assert "workers died 5 times before getting ready (exited with code 1); stopping" in (
        messages(final)
    )
    assert halts(final) == [Halt(3)]


def test_the_limit_of_a_reloaded_generation_applies_after_commit() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.load = lambda generation: GenerationLoaded(generation, 1, LIMITED)
    script.signal(signal.SIGHUP)
    script.ready(101)
    assert script.state.policy == LIMITED
    assert script.phase() is Phase.SERVING
    assert POLICY.max_worker_memory is None


def test_liveness_fails_while_a_slot_crash_loops_and_recovers_once_a_worker_is_stable() -> None:
    script = Script(workers=1)
    script.start_serving()
    for crash in range(CRASH_LOOP_FAILURES):
        assert is_live(script.state, script.now), crash
        [pid] = script.pids()
        script.exited(pid, 1, after=0.5)
        script.tick(after=60.0)
        [pid] = script.pids()
        script.ready(pid)
    assert not is_live(script.state, script.now)
    assert not is_live(script.state, script.now + STABLE_READY_S - 0.1)
    assert is_live(script.state, script.now + STABLE_READY_S)
