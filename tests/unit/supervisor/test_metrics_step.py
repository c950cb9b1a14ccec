"""Event scripts for what /metrics and /readyz read from step(): shutdown_delay, restarts by
reason, reloads by result, and traffic totals that survive a worker's replacement."""

from __future__ import annotations

import signal
from dataclasses import replace

from serve.server.channel import ZERO_DURATIONS, WorkerBootFailed, WorkerHeartbeat
from serve.supervisor.actions import Spawn
from serve.supervisor.events import (
    GenerationFailed,
    HealthSampled,
    MasterStarted,
    WorkerMessageReceived,
)
from serve.supervisor.fleet import Phase, Policy, Traffic, answers_ready, is_ready
from serve.supervisor.reload import MIB
from serve.supervisor.state import STABLE_READY_S, next_deadline
from tests.unit.supervisor.step_script import POLICY, Script, messages, notes, signals, spawns

DELAY = Policy(graceful_timeout_s=30.0, health_interval_s=3600.0, shutdown_delay_s=10.0)


def durations(*counts: int) -> tuple[int, ...]:
    return counts + ZERO_DURATIONS[len(counts) :]


def beat(script: Script, pid: int, heartbeat: WorkerHeartbeat) -> None:
    script.feed(WorkerMessageReceived(pid, heartbeat))


def test_term_with_shutdown_delay_serves_on_with_readyz_down_then_drains() -> None:
    script = Script(workers=2, policy=DELAY)
    script.start_serving()
    assert is_ready(script.state)
    term = script.signal(signal.SIGTERM)
    assert messages(term) == [
        "shutting down (graceful) in 10s (shutdown_delay); /readyz answers 503 meanwhile"
    ]
    assert notes(term) == ["stopping"]
    assert signals(term) == []
    assert script.phase() is Phase.DELAYING
    assert not is_ready(script.state)
    assert next_deadline(script.state) == script.now + 10.0
    # Workers keep serving (and reporting) through the delay.
    assert signals(script.heartbeat(100, requests=5, after=9.0)) == []
    drain = script.tick(1.0)
    assert messages(drain) == ["shutdown_delay over; shutting down (graceful)"]
    assert notes(drain) == []
    assert signals(drain) == [(100, signal.SIGTERM), (101, signal.SIGTERM)]
    assert script.phase() is Phase.STOPPING
    script.exited(100, 0)
    script.exited(101, 0)
    assert script.phase() is Phase.HALTED


def test_without_a_serving_worker_term_drains_at_once_despite_the_delay() -> None:
    script = Script(workers=2, policy=DELAY)
    script.feed(MasterStarted())
    assert not is_ready(script.state)
    term = script.signal(signal.SIGTERM)
    assert messages(term) == ["shutting down (graceful)"]
    assert signals(term) == [(100, signal.SIGTERM), (101, signal.SIGTERM)]


def test_one_ready_worker_is_enough_to_delay_during_the_first_boot() -> None:
    script = Script(workers=2, policy=DELAY)
    script.feed(MasterStarted())
    script.ready(100)
    assert is_ready(script.state)
    assert signals(script.signal(signal.SIGTERM)) == []
    assert script.phase() is Phase.DELAYING


def test_shutdown_delay_zero_is_the_plain_graceful_stop() -> None:
    script = Script(workers=1, policy=replace(DELAY, shutdown_delay_s=0.0))
    script.start_serving()
    assert signals(script.signal(signal.SIGTERM)) == [(100, signal.SIGTERM)]
    assert script.phase() is Phase.STOPPING


def test_term_again_waits_on_int_cuts_the_delay_short_and_a_second_int_quits() -> None:
    script = Script(workers=1, policy=DELAY)
    script.start_serving()
    script.signal(signal.SIGTERM)
    assert script.signal(signal.SIGTERM, after=1.0) == []
    cut = script.signal(signal.SIGINT, after=1.0)
    assert messages(cut) == [
        "shutting down (graceful) without the rest of shutdown_delay",
        "press Ctrl-C again to stop at once",
    ]
    assert notes(cut) == []
    assert signals(cut) == [(100, signal.SIGTERM)]
    quit_ = script.signal(signal.SIGINT)
    assert signals(quit_) == [(100, signal.SIGQUIT)]
    assert script.phase() is Phase.QUITTING


def test_quit_during_the_delay_stops_at_once() -> None:
    script = Script(workers=1, policy=DELAY)
    script.start_serving()
    script.signal(signal.SIGTERM)
    assert signals(script.signal(signal.SIGQUIT)) == [(100, signal.SIGQUIT)]


def test_during_the_delay_a_crash_is_replaced_and_reloads_and_scaling_are_refused() -> None:
    script = Script(workers=2, policy=DELAY)
    script.start_serving()
    script.signal(signal.SIGTERM)
    assert spawns(script.exited(101, -signal.SIGKILL, after=STABLE_READY_S)) == [Spawn(1, 1)]
    assert messages(script.signal(signal.SIGHUP)) == ["SIGHUP: reload ignored while delaying"]
    assert messages(script.signal(signal.SIGTTIN)) == ["SIGTTIN ignored while delaying"]
    assert not is_ready(script.state)
    assert script.state.restarts == {"crash": 1}


def test_a_crash_counts_once_and_an_expected_exit_not_at_all() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.exited(100, -signal.SIGKILL, after=STABLE_READY_S)
    assert script.state.restarts == {"crash": 1}
    script.signal(signal.SIGTERM)
    script.exited(101, 0)
    script.exited(102, 0)
    assert script.state.restarts == {"crash": 1}


def test_a_worker_dying_during_a_reload_without_a_replacement_is_no_restart() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.signal(signal.SIGHUP)
    # The old generation's worker dies while the new one boots: its slot belongs to the new
    # generation, which is starting its own worker anyway.
    script.exited(100, -signal.SIGKILL)
    assert script.state.restarts == {}


def test_a_blocked_worker_counts_as_a_timeout_and_its_abort_exit_not_as_a_crash() -> None:
    script = Script(workers=1, policy=replace(POLICY, worker_timeout_s=3.0))
    script.start_serving()
    script.tick(3.0)
    assert script.state.restarts == {"timeout": 1}
    script.exited(100, -signal.SIGABRT)
    assert script.state.restarts == {"timeout": 1}


def test_a_boot_timeout_counts_as_a_timeout_not_a_crash() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.exited(100, 1, after=10.0)
    assert script.state.restarts == {"crash": 1}
    # The replacement never gets ready: killed at boot_timeout, counted then.
    killed = script.tick(POLICY.boot_timeout_s)
    assert signals(killed) == [(101, signal.SIGKILL)]
    assert script.state.restarts == {"crash": 1, "timeout": 1}
    script.exited(101, -signal.SIGKILL)
    assert script.state.restarts == {"crash": 1, "timeout": 1}


def test_retirements_count_by_limit() -> None:
    script = Script(workers=1, policy=replace(POLICY, max_worker_memory=100 * MIB))
    script.request_limit = 10
    script.start_serving()
    script.heartbeat(100, requests=10)
    assert script.state.restarts == {"max_requests": 1}
    script.ready(101)
    script.exited(100, 0)
    script.rss = {101: 200 * MIB}
    script.state = replace(script.state, health_due=None)
    script.tick(0.0)
    assert script.state.restarts == {"max_requests": 1, "memory": 1}


def test_a_committed_reload_counts_ok_and_one_restart_per_replaced_worker() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.signal(signal.SIGHUP)
    assert script.state.reloads == {}
    script.ready(102)
    script.ready(103)
    assert script.state.reloads == {"ok": 1}
    assert script.state.restarts == {"reload": 2}


def test_a_rejected_config_and_a_generation_that_cannot_boot_count_as_failed() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.load = lambda generation: GenerationFailed(generation, "prod.yaml:1:1: bad")
    script.signal(signal.SIGHUP)
    assert script.state.reloads == {"failed": 1}
    script.load = lambda generation: Script(workers=1).load(generation)
    script.signal(signal.SIGHUP)
    script.feed(WorkerMessageReceived(101, WorkerBootFailed(4, "no module")))
    script.exited(101, 4)
    assert script.state.reloads == {"failed": 2}
    assert script.state.restarts == {}
    assert script.phase() is Phase.SERVING


def test_heartbeats_fill_the_record_and_an_exit_moves_its_traffic_to_the_totals() -> None:
    script = Script(workers=2)
    script.start_serving()
    beat(script, 100, WorkerHeartbeat(3, 2, (0, 2, 0, 1, 0), durations(3), 0.004))
    beat(script, 101, WorkerHeartbeat(1, 1, (0, 1, 0, 0, 0), durations(0, 1), 0.007))
    record = script.state.workers[100]
    assert (record.requests, record.connections) == (3, 2)
    assert record.traffic == Traffic(3, (0, 2, 0, 1, 0), durations(3), 0.004)
    script.exited(100, -signal.SIGKILL, after=STABLE_READY_S)
    assert script.state.exited_traffic == record.traffic
    beat(script, 102, WorkerHeartbeat(4, 0, (0, 4, 0, 0, 0), durations(4), 0.001))
    script.exited(101, 0)
    totals = script.state.exited_traffic
    assert totals.requests == 4
    assert totals.responses == (0, 3, 0, 1, 0)
    assert totals.durations == durations(3, 1)
    # 102 still runs: its counters are its own until it exits.
    assert script.state.workers[102].traffic.requests == 4


def test_health_samples_keep_memory_and_cpu_of_known_workers() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.feed(HealthSampled(((100, 5 * MIB), (999, 1)), ((100, 1.5), (999, 2.0))))
    record = script.state.workers[100]
    assert (record.rss, record.cpu_s) == (5 * MIB, 1.5)
    assert 999 not in script.state.workers
    # A sample without CPU keeps the last one.
    script.feed(HealthSampled(((100, 6 * MIB),)))
    assert (script.state.workers[100].rss, script.state.workers[100].cpu_s) == (6 * MIB, 1.5)


def test_during_a_usr2_upgrade_both_masters_answer_ready() -> None:
    old = Script(workers=1)
    old.start_serving()
    old.signal(signal.SIGUSR2)
    assert answers_ready(old.state)
    old.signal(signal.SIGTERM)
    # The new master stopped us: it serves, so the shared /readyz stays 200.
    assert not is_ready(old.state)
    assert answers_ready(old.state)
    new = Script(workers=1)
    new.feed(MasterStarted(takeover_from=old.upgrade_pid))
    assert not is_ready(new.state)
    assert answers_ready(new.state)
    new.ready(100)
    assert new.state.takeover_from is None
    assert answers_ready(new.state)


def test_the_first_ctrl_c_says_what_a_second_one_does() -> None:
    script = Script(workers=1, policy=DELAY)
    script.start_serving()
    first = script.signal(signal.SIGINT)
    assert messages(first)[-1] == "press Ctrl-C again to drain now"
    assert script.phase() is Phase.DELAYING
