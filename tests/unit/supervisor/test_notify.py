"""sd_notify: a real AF_UNIX datagram socket stands in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.supervisor.notify import Notifier


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def messages(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def test_unset_or_unusable_socket_means_no_notifier() -> None:
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": ""}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_every_message_reaches_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier is not None
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.ready("serving: 2 of 2 workers ready")
    notifier.reloading()
    notifier.stopping()
    notifier.status("line one\nline two")
    notifier.watchdog()
    notifier.mainpid(4242)
    got = messages(sock, 6)
    assert got[0] == "READY=1\nSTATUS=serving: 2 of 2 workers ready"
    match = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", got[1])
    assert match is not None
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(match.group(1)) <= after
    # A newline in STATUS would start another assignment: it becomes a space.
    assert got[2:] == ["STOPPING=1", "STATUS=line one line two", "WATCHDOG=1", "MAINPID=4242"]


def test_abstract_socket() -> None:
    name = f"serve-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_a_missing_socket_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier is not None
    caplog.set_level("DEBUG", logger="serve.master")
    notifier.stopping()
    assert "sd_notify 'STOPPING=1' failed" in caplog.text


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/x.sock", **env})
    assert notifier is not None
    assert notifier.watchdog_interval_s == interval
