"""Event scripts for reloads: SIGHUP and file changes roll the fleet to a new generation."""

from __future__ import annotations

import logging
import signal

from serve.server.channel import WorkerBootFailed
from serve.supervisor.actions import CommitGeneration, DropGeneration, LoadGeneration, Log, Spawn
from serve.supervisor.events import (
    FilesChanged,
    GenerationFailed,
    GenerationLoaded,
    MasterStarted,
    WorkerMessageReceived,
)
from serve.supervisor.fleet import Phase, Policy, ReloadRecord
from serve.supervisor.state import STABLE_READY_S
from tests.unit.supervisor.step_script import (
    POLICY,
    Script,
    halts,
    messages,
    notes,
    signals,
    spawns,
)

BAD_YAML = "prod.yaml:3:10: workers: expected a positive integer, got 'four'"


def test_sighup_loads_the_config_then_retires_the_old_generation_once_the_new_is_ready() -> None:
    script = Script(workers=2)
    old = script.start_serving()
    actions = script.signal(signal.SIGHUP)
    assert LoadGeneration(2) in actions
    assert notes(actions) == ["reloading"]
    assert spawns(actions) == [Spawn(0, 2), Spawn(1, 2)]
    assert "SIGHUP: loading the config for generation 2" in messages(actions)
    assert "worker 102 booting (gen 2)" in messages(actions)
    assert signals(actions) == []
    assert script.phase() is Phase.RELOADING
    assert signals(script.ready(102)) == []
    done = script.ready(103)
    assert signals(done) == [(pid, signal.SIGTERM) for pid in old]
    assert CommitGeneration(2) in done
    assert notes(done) == ["ready"]
    assert "generation 2 ready; retiring the previous workers" in messages(done)
    assert "serve ready" not in " ".join(messages(done))
    assert spawns(script.exited(100, 0) + script.exited(101, 0)) == []
    assert script.pids() == [102, 103]
    assert script.phase() is Phase.SERVING


def test_a_sighup_during_a_reload_is_queued_and_runs_once_it_is_done() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.signal(signal.SIGHUP)
    queued = script.signal(signal.SIGHUP) + script.signal(signal.SIGHUP)
    assert messages(queued) == ["SIGHUP: reload queued until generation 2 is ready"] * 2
    assert spawns(queued) == []
    done = script.ready(101)
    assert CommitGeneration(2) in done
    assert LoadGeneration(3) in done
    assert spawns(done) == [Spawn(0, 3)]
    assert script.phase() is Phase.RELOADING
    script.ready(102)
    assert script.state.queued_reload is None
    assert script.phase() is Phase.SERVING


def test_a_sighup_while_booting_waits_for_the_first_generation() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    assert messages(script.signal(signal.SIGHUP)) == [
        "SIGHUP: reload queued until generation 1 is ready"
    ]
    first = script.ready(100)
    assert "serve ready (1 worker)" in messages(first)
    assert LoadGeneration(2) in first


def test_a_bad_config_is_logged_and_the_fleet_keeps_serving() -> None:
    script = Script(workers=2)
    old = script.start_serving()
    script.load = lambda generation: GenerationFailed(generation, BAD_YAML)
    actions = script.signal(signal.SIGHUP)
    error = f"reload failed: {BAD_YAML}; generation 1 keeps serving"
    assert Log(logging.ERROR, error) in actions
    assert notes(actions) == ["reloading", "ready"]
    assert spawns(actions) == []
    assert signals(actions) == []
    assert script.phase() is Phase.SERVING
    assert script.pids() == old
    # The failed attempt used no generation: a good one after it is generation 2.
    script.load = lambda generation: GenerationLoaded(generation, 2, POLICY)
    assert spawns(script.signal(signal.SIGHUP)) == [Spawn(0, 2), Spawn(1, 2)]


def test_the_reloaded_worker_count_and_policy_replace_the_old_ones() -> None:
    script = Script(workers=2)
    script.start_serving()
    policy = Policy(graceful_timeout_s=7.0, boot_timeout_s=9.0, health_interval_s=3600.0)
    script.load = lambda generation: GenerationLoaded(generation, 3, policy)
    assert spawns(script.signal(signal.SIGHUP)) == [Spawn(0, 2), Spawn(1, 2), Spawn(2, 2)]
    assert script.state.workers[102].kill_at == script.now + 9.0
    for pid in (102, 103, 104):
        script.ready(pid)
    assert script.state.desired == 3
    assert script.state.policy == policy
    assert script.state.workers[100].kill_at == script.now + 7.0 + 5.0


def test_a_new_generation_that_cannot_boot_leaves_the_old_one_serving() -> None:
    script = Script(workers=2)
    old = script.start_serving()
    script.load = lambda generation: GenerationLoaded(generation, 3, Policy(boot_timeout_s=1.0))
    script.signal(signal.SIGHUP)
    script.ready(102)
    failed = script.exited(103, 4)
    assert halts(failed) == []
    assert "generation 2 failed to boot; generation 1 keeps serving" in messages(failed)
    assert DropGeneration(2) in failed
    assert notes(failed) == ["ready"]
    assert signals(failed) == [(102, signal.SIGTERM), (104, signal.SIGTERM)]
    assert spawns(failed) == []
    assert script.state.generation == 1
    assert script.state.policy == POLICY
    assert script.state.desired == 2
    assert script.phase() is Phase.SERVING
    script.exited(102, 0)
    script.exited(104, 0)
    assert script.pids() == old
    # The old workers are still the fleet: losing one replaces it as before.
    assert spawns(script.exited(100, 1, after=STABLE_READY_S)) == [Spawn(0, 1)]
    # A failed generation's number is not used again.
    script.load = lambda generation: GenerationLoaded(generation, 2, POLICY)
    assert LoadGeneration(3) in script.signal(signal.SIGHUP)


def test_an_old_worker_lost_during_a_failed_reload_is_replaced() -> None:
    script = Script(workers=2)
    script.start_serving()
    script.signal(signal.SIGHUP)
    assert spawns(script.exited(100, -signal.SIGKILL)) == []
    failed = script.exited(102, 3)
    assert spawns(failed) == [Spawn(0, 1)]


def test_a_new_generation_that_hangs_in_boot_is_killed_and_abandoned() -> None:
    policy = Policy(boot_timeout_s=10.0, health_interval_s=3600.0)
    script = Script(workers=1, policy=policy)
    script.start_serving()
    script.signal(signal.SIGHUP)
    script.heartbeat(100, after=5.0)
    assert signals(script.tick(5.0)) == [(101, signal.SIGKILL)]
    abandoned = script.exited(101, -signal.SIGKILL)
    assert "generation 2 failed to boot; generation 1 keeps serving" in messages(abandoned)
    assert script.pids() == [100]


def test_ttin_and_ttou_wait_while_reloading_and_a_reload_restores_the_config_count() -> None:
    script = Script(workers=2)
    script.start_serving()
    assert spawns(script.signal(signal.SIGTTIN)) == [Spawn(2, 1)]
    script.ready(102)
    script.signal(signal.SIGHUP)
    ignored = script.signal(signal.SIGTTOU) + script.signal(signal.SIGTTIN)
    assert messages(ignored) == [
        "SIGTTOU ignored while reloading",
        "SIGTTIN ignored while reloading",
    ]
    assert spawns(ignored) == []
    assert signals(ignored) == []
    script.ready(103)
    done = script.ready(104)
    assert signals(done) == [(100, signal.SIGTERM), (101, signal.SIGTERM), (102, signal.SIGTERM)]
    assert script.state.desired == 2


def test_changed_files_take_the_reload_path() -> None:
    script = Script(workers=1)
    script.start_serving()
    paths = tuple(f"app/m{n}.py" for n in range(7))
    actions = script.feed(FilesChanged(paths))
    assert messages(actions)[:2] == [
        "changed: app/m0.py, app/m1.py, app/m2.py, app/m3.py, app/m4.py ...",
        "files changed: loading the config for generation 2",
    ]
    assert spawns(actions) == [Spawn(0, 2)]
    # A syntax error in the changed file: the new worker cannot import the app.
    failed = script.exited(101, 4)
    assert "generation 2 failed to boot; generation 1 keeps serving" in messages(failed)
    assert script.pids() == [100]


def test_a_reload_while_stopping_is_ignored() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.signal(signal.SIGTERM)
    actions = script.signal(signal.SIGHUP)
    assert messages(actions) == ["SIGHUP: reload ignored while stopping"]
    assert [a for a in actions if isinstance(a, LoadGeneration)] == []


def test_the_last_reload_records_its_start_end_and_why_it_failed() -> None:
    script = Script(workers=1)
    script.start_serving()
    assert script.state.last_reload is None
    started = script.now + 1.0
    script.signal(signal.SIGHUP, after=1.0)
    assert script.state.last_reload == ReloadRecord(started, "SIGHUP", generation=2)
    script.feed(WorkerMessageReceived(101, WorkerBootFailed(4, "SyntaxError in app.py")))
    script.exited(101, 4, after=0.5)
    assert script.state.last_reload == ReloadRecord(
        started,
        "SIGHUP",
        generation=2,
        result="failed",
        finished=started + 0.5,
        detail="generation 2 failed to boot: SyntaxError in app.py",
    )
    script.load = lambda generation: GenerationFailed(generation, BAD_YAML)
    script.signal(signal.SIGHUP, after=1.0)
    assert script.state.last_reload == ReloadRecord(
        script.now, "SIGHUP", result="failed", finished=script.now, detail=BAD_YAML
    )
    script.load = lambda generation: GenerationLoaded(generation, 1, POLICY)
    script.feed(FilesChanged(("app.py",)), after=1.0)
    script.ready(102, after=0.25)
    assert script.state.last_reload == ReloadRecord(
        script.now - 0.25, "files changed", generation=3, result="ok", finished=script.now
    )
    assert script.state.reloads == {"failed": 2, "ok": 1}
