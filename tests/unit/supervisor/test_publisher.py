"""What the master shows outsiders after each Tick: a real AF_UNIX datagram socket stands
in for systemd's NOTIFY_SOCKET, and the status file lands next to a real pidfile."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from serve.supervisor.actions import Notify
from serve.supervisor.config_schema import Config
from serve.supervisor.fleet import Phase, Policy, SupervisorState, initial_state
from serve.supervisor.publisher import Publisher
from serve.supervisor.resources import Resources
from serve.supervisor.status import status_path


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
def resources(
    tmp_path: Path, systemd: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Resources]:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.getsockname())
    # systemd's WatchdogSec=10min for this very process: a ping is due every 5 minutes, so
    # no second one falls due within a test however slow the machine.
    monkeypatch.setenv("WATCHDOG_USEC", "600000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = Config(app="main:app", bind=("127.0.0.1:0",), pidfile=str(tmp_path / "serve.pid"))
    held = Resources(config)
    yield held
    held.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram the service manager got since the last call."""
    lines: list[str] = []
    while True:
        try:
            lines += sock.recv(4096).decode().splitlines()
        except BlockingIOError:
            return lines


def status_file(resources: Resources) -> Path:
    assert resources.pidfile is not None
    return Path(status_path(resources.pidfile.path))


def state() -> SupervisorState:
    return initial_state(Policy(), workers=2)


def test_status_and_the_status_file_follow_the_fleet_not_every_tick(
    resources: Resources, systemd: socket.socket
) -> None:
    publisher = Publisher(resources)
    booting = state()
    publisher.publish(booting)
    assert "STATUS=booting: 0 of 2 workers ready (generation 1)" in received(systemd)
    assert json.loads(status_file(resources).read_text())["phase"] == "booting"
    status_file(resources).unlink()
    publisher.publish(booting)
    assert not [line for line in received(systemd) if line.startswith("STATUS=")]
    assert not status_file(resources).exists()
    publisher.publish(replace(booting, phase=Phase.SERVING))
    assert "STATUS=serving: 0 of 2 workers ready (generation 1)" in received(systemd)
    assert json.loads(status_file(resources).read_text())["phase"] == "serving"


def test_a_memory_probe_rewrites_the_status_file_without_a_status_line(
    resources: Resources, systemd: socket.socket
) -> None:
    publisher = Publisher(resources)
    publisher.publish(state())
    status_file(resources).unlink()
    received(systemd)
    publisher.measured()
    publisher.publish(state())
    assert status_file(resources).exists()
    assert not [line for line in received(systemd) if line.startswith("STATUS=")]


def test_the_watchdog_is_pinged_once_per_interval_while_the_master_runs(
    resources: Resources, systemd: socket.socket
) -> None:
    publisher = Publisher(resources)
    assert publisher.next_deadline() == 0.0
    publisher.publish(state())
    assert "WATCHDOG=1" in received(systemd)
    due = publisher.next_deadline()
    assert due is not None
    publisher.publish(state())
    assert "WATCHDOG=1" not in received(systemd)
    assert publisher.next_deadline() == due
    publisher.publish(replace(state(), phase=Phase.STOPPING))
    assert "WATCHDOG=1" not in received(systemd)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Notify("ready", "serving: 2 of 2"), ["READY=1", "STATUS=serving: 2 of 2"]),
        (Notify("reloading"), ["RELOADING=1"]),
        (Notify("stopping"), ["STOPPING=1"]),
        (Notify("mainpid"), [f"MAINPID={os.getpid()}"]),
    ],
)
def test_each_notify_action_reaches_the_service_manager(
    resources: Resources, systemd: socket.socket, action: Notify, expected: list[str]
) -> None:
    Publisher(resources).notify(action)
    lines = received(systemd)
    assert all(line in lines for line in expected), lines
