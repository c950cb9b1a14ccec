"""Event scripts for preload: one template per generation forks its workers."""

from __future__ import annotations

import signal
from dataclasses import replace

from serve.server.channel import WorkerBootFailed, WorkerReady
from serve.server.exitcodes import APP_LOAD_ERROR
from serve.supervisor.actions import (
    Action,
    DropGeneration,
    Halt,
    Spawn,
    StartTemplate,
    StopListening,
)
from serve.supervisor.events import (
    Event,
    GenerationLoaded,
    MasterStarted,
    SpawnFailed,
    TemplateReported,
    TemplateStarted,
    TemplateStartFailed,
    WorkerSpawned,
)
from serve.supervisor.fleet import CRASH_LOOP_FAILURES, QUIT_GRACE_S, Phase, backoff_delay, is_live
from serve.supervisor.state import STABLE_READY_S, next_deadline
from tests.unit.supervisor.step_script import POLICY, Script, halts, messages, signals, spawns

PRELOAD = replace(POLICY, preload=True)
LOAD_FAILED = WorkerBootFailed(APP_LOAD_ERROR, "cannot import module 'app'")


class PreloadScript(Script):
    """Templates get pids from 900 up. A Spawn is answered like the template answers it:
    later, by answer_forks(), not at once."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers, PRELOAD)
        self.next_template = 900
        self.asked: list[Spawn] = []
        self.template_fork_fails = False

    def _answer(self, action: Action) -> Event | None:
        if isinstance(action, StartTemplate):
            if self.template_fork_fails:
                return TemplateStartFailed(action.generation, "fork: out of memory")
            self.next_template += 1
            return TemplateStarted(self.next_template - 1, action.generation)
        if isinstance(action, Spawn):
            self.asked.append(action)
            return None
        return super()._answer(action)

    def template_ready(self, pid: int, after: float = 0.0) -> list[Action]:
        return self.feed(TemplateReported(pid, WorkerReady()), after)

    def answer_forks(self) -> list[Action]:
        actions: list[Action] = []
        asked, self.asked = self.asked, []
        for spawn in asked:
            self._next_pid += 1
            event = WorkerSpawned(self._next_pid - 1, spawn.slot, spawn.generation)
            actions += self.feed(event)
        return actions

    def start_serving(self) -> list[int]:
        self.feed(MasterStarted())
        self.template_ready(900)
        self.answer_forks()
        for pid in self.pids():
            self.ready(pid)
        assert self.phase() is Phase.SERVING
        return self.pids()


def test_workers_are_forked_only_once_the_template_imported_the_app() -> None:
    script = PreloadScript(workers=2)
    actions = script.feed(MasterStarted())
    assert StartTemplate(1) in actions
    assert spawns(actions) == []
    assert "template 900 importing the app (gen 1)" in messages(actions)
    loaded = script.template_ready(900, after=0.5)
    assert spawns(loaded) == [Spawn(0, 1), Spawn(1, 1)]
    assert "template 900 imported the app in 0.50s (gen 1)" in messages(loaded)
    booting = script.answer_forks()
    assert "worker 100 booting (gen 1)" in messages(booting)
    assert script.pids() == [100, 101]


def test_a_template_that_cannot_import_the_app_halts_the_first_start_with_code_4() -> None:
    script = PreloadScript()
    script.feed(MasterStarted())
    failed = script.feed(TemplateReported(900, LOAD_FAILED))
    assert messages(failed) == [f"template 900 cannot load the app: {LOAD_FAILED.message}"]
    stopped = script.exited(900, APP_LOAD_ERROR)
    reason = f"the app cannot be loaded (exit code 4): {LOAD_FAILED.message}"
    assert f"{reason}; stopping" in messages(stopped)
    assert script.state.exit_reason == reason  # what reaches stderr
    assert halts(stopped) == [Halt(APP_LOAD_ERROR)]
    assert script.asked == []


def test_a_template_still_importing_after_boot_timeout_is_killed_and_tried_again() -> None:
    script = PreloadScript()
    script.feed(MasterStarted())
    assert next_deadline(script.state) == script.now + POLICY.boot_timeout_s
    killed = script.tick(POLICY.boot_timeout_s)
    assert signals(killed) == [(900, signal.SIGKILL)]
    assert "template 900 has not imported the app after 60s; killing it" in messages(killed)
    again = script.exited(900, -signal.SIGKILL)
    assert halts(again) == []
    assert StartTemplate(1) in script.tick(backoff_delay(1))


def test_a_reload_starts_a_new_template_and_retires_the_old_one_with_its_workers() -> None:
    script = PreloadScript()
    old = script.start_serving()
    reloading = script.signal(signal.SIGHUP)
    assert StartTemplate(2) in reloading
    assert spawns(reloading) == []
    assert spawns(script.template_ready(901)) == [Spawn(0, 2), Spawn(1, 2)]
    script.answer_forks()
    script.ready(102)
    done = script.ready(103)
    assert sorted(signals(done)) == [(pid, signal.SIGTERM) for pid in [*old, 900]]
    gone = script.exited(900, -signal.SIGTERM)
    assert messages(gone) == ["template 900 (gen 1) stopped"]
    assert StartTemplate(1) not in gone and StartTemplate(2) not in gone
    assert [t.pid for t in script.state.templates.values()] == [901]


def test_a_reload_whose_template_cannot_import_the_app_keeps_the_old_generation() -> None:
    script = PreloadScript()
    old = script.start_serving()
    script.signal(signal.SIGHUP)
    script.feed(TemplateReported(901, LOAD_FAILED))
    failed = script.exited(901, APP_LOAD_ERROR)
    assert DropGeneration(2) in failed
    assert "generation 2 failed to boot; generation 1 keeps serving" in messages(failed)
    last = script.state.last_reload
    assert last is not None and last.result == "failed"
    assert last.detail == f"generation 2 failed to boot: {LOAD_FAILED.message}"
    assert script.phase() is Phase.SERVING
    assert script.state.generation == 1
    assert signals(failed) == []
    assert script.pids() == old
    assert [t.pid for t in script.state.templates.values()] == [900]
    # Nothing is due: the loop must sleep, not spin.
    deadline = next_deadline(script.state)
    assert deadline is None or deadline > script.now


def test_a_crashed_worker_is_forked_again_by_its_generation_template() -> None:
    script = PreloadScript()
    script.start_serving()
    actions = script.exited(100, -signal.SIGKILL, after=STABLE_READY_S)
    assert spawns(actions) == [Spawn(0, 1)]
    assert not any(isinstance(a, StartTemplate) for a in actions)


def test_a_dead_template_is_replaced_and_the_fork_it_never_answered_is_asked_again() -> None:
    script = PreloadScript()
    script.start_serving()
    script.exited(100, -signal.SIGKILL, after=STABLE_READY_S)
    assert script.asked == [Spawn(0, 1)]
    script.asked = []  # the template dies before it answers
    lost = script.exited(900, -signal.SIGKILL)
    assert "template 900 (gen 1) killed by SIGKILL" in messages(lost)
    assert spawns(lost) == []
    restarted = script.tick(backoff_delay(1))
    assert StartTemplate(1) in restarted
    assert spawns(script.template_ready(901)) == [Spawn(0, 1)]


def test_a_template_fork_failure_is_retried_with_backoff() -> None:
    script = PreloadScript()
    script.template_fork_fails = True
    actions = script.feed(MasterStarted())
    assert "cannot start a template: fork: out of memory; next template in 0.1s" in messages(
        actions
    )
    script.template_fork_fails = False
    assert StartTemplate(1) in script.tick(backoff_delay(1))


def test_a_fork_the_template_could_not_make_backs_its_slot_off() -> None:
    script = PreloadScript()
    script.feed(MasterStarted())
    script.template_ready(900)
    actions = script.feed(SpawnFailed(0, 1, "fork: out of memory"))
    assert "cannot start a worker: fork: out of memory; retrying in 0.1s" in messages(actions)


def test_a_worker_forked_for_a_generation_that_failed_meanwhile_is_stopped() -> None:
    script = PreloadScript()
    script.start_serving()
    script.signal(signal.SIGHUP)
    script.template_ready(901)
    first, second = script.asked
    script.feed(WorkerSpawned(102, first.slot, first.generation))
    failed = script.exited(102, 3)  # the reload fails while the second fork is under way
    assert (901, signal.SIGTERM) in signals(failed)
    late = script.feed(WorkerSpawned(103, second.slot, second.generation))
    assert signals(late) == [(103, signal.SIGTERM)]


def test_stopping_ends_the_template_and_halts_once_it_is_gone_too() -> None:
    script = PreloadScript()
    workers = script.start_serving()
    stopping = script.signal(signal.SIGTERM)
    assert StopListening() in stopping
    assert sorted(signals(stopping)) == [(pid, signal.SIGTERM) for pid in [*workers, 900]]
    for pid in workers:
        assert halts(script.exited(pid, 0)) == []
    assert halts(script.exited(900, -signal.SIGTERM)) == [Halt(0)]


def test_ttin_asks_the_template_for_one_more_worker_and_ttou_stops_one() -> None:
    script = PreloadScript()
    workers = script.start_serving()
    up = script.signal(signal.SIGTTIN)
    assert spawns(up) == [Spawn(2, 1)]
    assert not any(isinstance(a, StartTemplate) for a in up)
    script.answer_forks()
    assert len(script.pids()) == 3
    down = script.signal(signal.SIGTTOU)
    assert signals(down) == [(max(script.pids()), signal.SIGTERM)]
    assert set(workers) < set(script.pids())


def test_ttin_while_the_template_imports_waits_for_it() -> None:
    script = PreloadScript()
    script.feed(MasterStarted())
    assert spawns(script.signal(signal.SIGTTIN)) == []
    assert spawns(script.template_ready(900)) == [Spawn(0, 1), Spawn(1, 1), Spawn(2, 1)]


def test_a_template_that_ignores_its_sigterm_is_killed_after_the_grace() -> None:
    script = PreloadScript()
    workers = script.start_serving()
    script.signal(signal.SIGTERM)
    for pid in workers:
        script.exited(pid, 0)
    assert signals(script.tick(QUIT_GRACE_S)) == [(900, signal.SIGKILL)]


def test_a_reload_to_preload_off_retires_the_template() -> None:
    script = PreloadScript()
    script.start_serving()
    script.load = lambda generation: GenerationLoaded(generation, 2, POLICY)
    reloading = script.signal(signal.SIGHUP)
    assert spawns(reloading) == [Spawn(0, 2), Spawn(1, 2)]
    script.answer_forks()
    script.ready(102)
    done = script.ready(103)
    assert (900, signal.SIGTERM) in signals(done)


def test_a_template_that_answers_no_fork_request_is_killed_and_replaced() -> None:
    script = PreloadScript()
    script.feed(MasterStarted())
    script.template_ready(900)
    assert script.asked == [Spawn(0, 1), Spawn(1, 1)]
    script.asked = []  # never answered: the template is stuck
    assert next_deadline(script.state) == script.now + POLICY.boot_timeout_s
    killed = script.tick(POLICY.boot_timeout_s)
    assert signals(killed) == [(900, signal.SIGKILL)]
    assert "template 900 answered no fork request for 60s; killing it" in messages(killed)
    script.exited(900, -signal.SIGKILL)
    assert StartTemplate(1) in script.tick(backoff_delay(1))
    assert spawns(script.template_ready(901)) == [Spawn(0, 1), Spawn(1, 1)]


def test_a_template_that_answered_its_forks_has_no_deadline() -> None:
    script = PreloadScript()
    script.start_serving()
    [template] = script.state.templates.values()
    assert template.kill_at is None
    later = signals(script.tick(POLICY.boot_timeout_s * 2))
    assert [pid for pid, _ in later if pid == template.pid] == []


def test_liveness_fails_while_templates_keep_failing_and_recovers_with_one_that_imports() -> None:
    script = PreloadScript()
    script.start_serving()
    for attempt in range(CRASH_LOOP_FAILURES):
        assert is_live(script.state, script.now), attempt
        [template] = script.state.templates
        script.exited(template, -signal.SIGKILL)
        script.tick(backoff_delay(attempt + 1))
    assert not is_live(script.state, script.now)
    [template] = script.state.templates
    script.template_ready(template)
    assert is_live(script.state, script.now)
