"""systemd integration with the real tools: socket activation and sd_notify.

systemd-socket-activate binds the address, waits for the first connection, then execs
serve with LISTEN_FDS=1 and the socket on descriptor 3, as systemd does for a .socket unit.
A datagram socket bound by the test stands in for systemd's NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS_DIR, ROOT, ServeProcess, StartServe

pytestmark = pytest.mark.system


def socket_activate_binary() -> str:
    binary = shutil.which("systemd-socket-activate")
    if binary is None:
        pytest.fail(
            "systemd-socket-activate is not installed: it ships with systemd "
            "(Debian/Ubuntu: apt-get install systemd); these tests need the real tool"
        )
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def socket_activated(tmp_path: Path, *serve_args: str) -> tuple[ServeProcess, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    # systemd-socket-activate passes the child only the variables named with -E.
    command = [
        socket_activate_binary(),
        "-l",
        f"127.0.0.1:{port}",
        "-E",
        f"PYTHONPATH={ROOT}",
        "-E",
        "PYTHONUNBUFFERED=1",
        sys.executable,
        "-m",
        "serve",
        "master_apps:app",
        *serve_args,
    ]
    return ServeProcess(command, APPS_DIR, tmp_path / "serve.log", env), port


def first_request(serve: ServeProcess, port: int) -> int:
    """The first connection makes systemd-socket-activate exec serve; serve answers it."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
    except httpx.HTTPError as exc:
        raise AssertionError(f"no answer on the activated socket ({exc}):\n{serve.log()}") from None
    assert response.status_code == 200
    return int(response.text)


@pytest.mark.parametrize("bind", [("--bind", "fd://3"), ()], ids=["fd-3", "listen-fds"])
def test_socket_activation_serves_on_the_passed_socket(
    tmp_path: Path, bind: tuple[str, ...]
) -> None:
    serve, port = socket_activated(tmp_path, "--workers", "2", *bind)
    try:
        worker = first_request(serve, port)
        log = serve.wait_ready().log()
        # systemd-socket-activate execs: serve runs under its pid, on the socket it made.
        assert f"Listening on http://127.0.0.1:{port}" in log
        assert "Listening on http://127.0.0.1:8000" not in log
        assert worker in serve.worker_pids()
        assert serve.stop() == 0
    finally:
        serve.kill_group()


def notifications(sock: socket.socket, wanted: set[str], until: str) -> list[str]:
    """The `wanted` assignments received, in order, up to and including `until`."""
    seen: list[str] = []
    while until not in seen:
        datagram = sock.recv(4096).decode()
        seen += [line for line in datagram.split("\n") if line in wanted]
    return seen


def test_sd_notify_ready_reloading_ready_stopping(tmp_path: Path, start_serve: StartServe) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        serve = start_serve("master_apps:app", env={"NOTIFY_SOCKET": str(path)})
        wanted = {"READY=1", "RELOADING=1", "STOPPING=1"}
        assert notifications(sock, wanted, "READY=1") == ["READY=1"]
        serve.signal(signal.SIGHUP)
        assert notifications(sock, wanted, "READY=1") == ["RELOADING=1", "READY=1"]
        serve.signal(signal.SIGTERM)
        assert notifications(sock, wanted, "STOPPING=1") == ["STOPPING=1"]
        assert serve.wait_exit() == 0
