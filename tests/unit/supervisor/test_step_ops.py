"""Event scripts for the operator's side: USR1, USR2 upgrades and sd_notify states."""

from __future__ import annotations

import logging
import signal

from serve.supervisor.actions import AbandonUpgrade, Log, ReopenLogs, StartUpgrade, StopListening
from serve.supervisor.events import MasterStarted, UpgradeFailed
from tests.unit.supervisor.step_script import Script, messages, notes, signals, spawns


def test_usr1_reopens_the_master_log_then_forwards_to_every_worker_each_time() -> None:
    script = Script(workers=2)
    script.start_serving()
    for _ in range(2):
        actions = script.signal(signal.SIGUSR1)
        assert actions[:2] == [ReopenLogs(), Log(logging.INFO, "SIGUSR1: log files reopened")]
        assert signals(actions) == [(100, signal.SIGUSR1), (101, signal.SIGUSR1)]
    assert {r.signals_sent for r in script.state.workers.values()} == {frozenset()}


def test_usr2_starts_one_new_master_and_then_waits_for_it() -> None:
    script = Script(workers=1)
    script.start_serving()
    actions = script.signal(signal.SIGUSR2)
    assert StartUpgrade() in actions
    assert "upgrade: new master 500 started; it stops this one once it serves" in messages(actions)
    again = script.signal(signal.SIGUSR2)
    assert messages(again) == ["SIGUSR2 ignored: new master 500 is taking over"]
    assert StartUpgrade() not in again
    # The new master stops us with SIGTERM once its workers serve: a normal graceful stop.
    stop = script.signal(signal.SIGTERM)
    assert signals(stop) == [(100, signal.SIGTERM)]
    assert notes(stop) == ["stopping"]


def test_only_a_stop_closes_the_listeners() -> None:
    script = Script(workers=1)
    script.start_serving()
    assert StopListening() not in script.signal(signal.SIGHUP)
    assert StopListening() not in script.signal(signal.SIGUSR2)
    assert StopListening() in script.signal(signal.SIGTERM)


def test_a_new_master_that_dies_early_leaves_this_one_serving() -> None:
    script = Script(workers=1)
    script.start_serving()
    script.signal(signal.SIGUSR2)
    died = script.exited(500, 3)
    assert messages(died) == [
        "upgrade failed: new master 500 exited with code 3; this master keeps serving"
    ]
    assert AbandonUpgrade() in died
    assert spawns(died) == []
    assert script.state.upgrade_pid is None
    assert StartUpgrade() in script.signal(signal.SIGUSR2)


def test_an_upgrade_that_cannot_start_is_logged() -> None:
    script = Script(workers=1)
    script.start_serving()
    actions = script.feed(UpgradeFailed("fork: Resource temporarily unavailable"))
    assert messages(actions) == [
        "upgrade failed: fork: Resource temporarily unavailable; this master keeps serving"
    ]
    assert script.state.upgrade_pid is None


def test_usr2_waits_until_the_fleet_serves() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    actions = script.signal(signal.SIGUSR2)
    assert messages(actions) == ["SIGUSR2 ignored while booting"]
    assert StartUpgrade() not in actions


def test_a_master_started_by_usr2_stops_the_old_one_once_its_workers_are_ready() -> None:
    script = Script(workers=2)
    script.feed(MasterStarted(takeover_from=42))
    assert signals(script.ready(100)) == []
    actions = script.ready(101)
    assert "upgrade: this master takes over; stopping the old master 42" in messages(actions)
    assert signals(actions) == [(42, signal.SIGTERM)]
    assert notes(actions) == ["ready", "mainpid"]
    assert script.state.takeover_from is None
    # Later reloads never signal the old master again.
    script.signal(signal.SIGHUP)
    assert (42, signal.SIGTERM) not in signals(script.ready(102) + script.ready(103))


def test_notify_ready_once_serving_and_stopping_once_on_the_way_out() -> None:
    script = Script(workers=1)
    assert notes(script.feed(MasterStarted())) == []
    assert notes(script.ready(100)) == ["ready"]
    assert notes(script.signal(signal.SIGTERM)) == ["stopping"]
    assert notes(script.signal(signal.SIGINT)) == []
    assert notes(script.signal(signal.SIGQUIT)) == []


def test_a_boot_failure_at_first_start_notifies_stopping() -> None:
    script = Script(workers=1)
    script.feed(MasterStarted())
    assert notes(script.exited(100, 4)) == ["stopping"]
