"""What operators and service managers see: `serve status` after TTIN/TTOU, USR1 after
logrotate, sd_notify states in order, and serve as PID 1 of a container."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS_DIR, ROOT, ServeProcess, StartServe, status_of, wait_until
from tests.conftest import write_config as write_yaml

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"


def serve_status(config: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "serve.supervisor", "status", "-c", str(config)],
        cwd=APPS_DIR,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_workers(config: Path, count: int) -> list[int]:
    """Wait until `serve status` lists `count` ready workers; return their pids."""

    def listed() -> list[int] | None:
        out = serve_status(config)
        pids = [int(pid) for pid in re.findall(r"^(\d+)\s+\d+\s+ready\b", out, re.MULTILINE)]
        return pids if f"workers {count}" in out.splitlines()[0] and len(pids) == count else None

    found: list[int] = wait_until(listed, timeout=30)
    return found


def test_ttin_and_ttou_show_in_serve_status(start_serve: StartServe, tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", pidfile=str(tmp_path / "s.pid")
    )
    serve = start_serve(config=config)
    [first] = status_workers(config, 1)
    assert f"master {serve.pid}" in serve_status(config)
    serve.signal(signal.SIGTTIN)
    assert first in status_workers(config, 2)
    serve.signal(signal.SIGTTIN)
    three = status_workers(config, 3)
    # Signals of one kind do not queue in the kernel: wait for each to take effect.
    serve.signal(signal.SIGTTOU)
    assert len(status_workers(config, 2)) == 2
    serve.signal(signal.SIGTTOU)
    assert status_workers(config, 1) == [first]
    assert sorted(serve.worker_pids()) == [first]
    assert set(three) >= {first}
    # A reload returns to the configured count.
    serve.signal(signal.SIGTTIN)
    status_workers(config, 2)
    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 2 ready")
    [reloaded] = status_workers(config, 1)
    assert "generation 2" in serve_status(config).splitlines()[0]
    assert reloaded not in three
    assert serve.stop() == 0
    assert not (tmp_path / "s.pid").exists()
    assert not (tmp_path / "s.pid.status.json").exists()


def test_usr1_reopens_a_log_file_that_logrotate_moved(
    start_serve: StartServe, tmp_path: Path
) -> None:
    log_file = tmp_path / "serve.log"
    config = write_yaml(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", log_file=str(log_file)
    )
    serve = start_serve(config=config, wait=False)
    # The master and its workers write to log_file, not to stderr.
    serve.log_path = log_file
    wait_until(log_file.exists)
    serve.wait_ready()
    [worker] = serve.worker_pids()
    rotated = tmp_path / "serve.log.1"
    log_file.rename(rotated)
    serve.signal(signal.SIGUSR1)
    wait_until(lambda: log_file.exists() and "SIGUSR1: log files reopened" in log_file.read_text())

    def worker_writes_the_new_file() -> bool:
        assert httpx.get(serve.url, timeout=10).status_code == 200
        return f"[{worker}] INFO serve.access: 127.0.0.1" in log_file.read_text()

    wait_until(worker_writes_the_new_file)
    old = rotated.read_text()
    assert "serve ready" in old
    assert "SIGUSR1" not in old
    assert serve.stop() == 0
    assert "serve stopped" in log_file.read_text()


def test_a_notify_socket_hears_ready_reloading_ready_stopping(
    start_serve: StartServe, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify.sock"))
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
        serve = start_serve(APP, env=env)
        serve.signal(signal.SIGHUP)
        serve.wait_log("generation 2 ready")
        assert serve.stop() == 0
        listener.setblocking(False)
        messages = []
        while True:
            try:
                messages.append(listener.recv(4096).decode())
            except BlockingIOError:
                break
    states = [
        line
        for message in messages
        for line in message.splitlines()
        if line in ("READY=1", "RELOADING=1", "STOPPING=1")
    ]
    assert states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    reloading = next(m for m in messages if m.startswith("RELOADING=1"))
    assert re.search(r"^MONOTONIC_USEC=\d+$", reloading, re.MULTILINE)
    assert any(m.startswith("STATUS=serving: 1 of 1 workers ready") for m in messages)
    assert "WATCHDOG=1" in messages


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root"
)
def test_as_pid_1_term_drains_reaps_every_orphan_and_exits_0(tmp_path: Path) -> None:
    command = [
        "unshare", "--pid", "--fork", "--mount-proc",
        sys.executable, "-m", "serve.supervisor", APP, "--bind", "127.0.0.1:0", "--workers", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["PYTHONPATH"] = str(ROOT)
    serve = ServeProcess(command, APPS_DIR, tmp_path / "serve.log", env)
    try:
        serve.wait_ready()
        [master] = serve.worker_pids()  # unshare's only child: serve, PID 1 inside
        assert "[1] INFO serve.master: serve ready" in serve.log()
        orphan = httpx.get(serve.url + "/orphan", timeout=10).text
        serve.wait_log(f"reaped process {orphan}, not a worker \\(exited with code 0\\)")
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        assert [_state(int(pid)) for pid in children if _state(int(pid)) == "Z"] == []
        with socket.create_connection(("127.0.0.1", serve.port), timeout=30) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            serve.wait_log("app: slow request started")
            os.kill(master, signal.SIGTERM)
            response = sock.recv(65536)
        assert status_of(response) == 200
        assert b"connection: close" in response.lower()
        assert serve.wait_exit() == 0
        log = serve.log()
        assert "shutting down (graceful)" in log
        assert log.count("app: lifespan shutdown in") == 2
        assert log.rstrip().endswith("serve stopped")
    finally:
        serve.kill_group()
