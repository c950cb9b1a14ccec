"""Health seen from outside: a worker whose loop is blocked is found, dumped and replaced;
workers never outlive a master killed with SIGKILL."""

from __future__ import annotations

import inspect
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.apps import supervisor_apps
from tests.conftest import ServeProcess, StartServe, wait_until

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"


def answer_pid(serve: ServeProcess) -> int:
    response = httpx.get(serve.url, headers={"connection": "close"}, timeout=10)
    assert response.status_code == 200
    return int(response.text)


def is_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (it serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def connection_ends(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def hang_line() -> int:
    lines, first = inspect.getsourcelines(supervisor_apps.hang)
    [offset] = [i for i, line in enumerate(lines) if supervisor_apps.HANG_MARKER in line]
    return first + offset


def test_a_blocked_worker_is_aborted_with_its_stack_in_the_log_and_replaced(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--worker-timeout", "2")
    [stuck] = serve.worker_pids()
    with socket.create_connection(("127.0.0.1", serve.port), timeout=30) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        serve.wait_log(f"app: worker {stuck} blocks its loop")
        log = serve.wait_log(f"worker {stuck} killed by SIGABRT", timeout=30)
        # The request the blocked worker held is lost with it: the connection just ends.
        assert connection_ends(sock)
    assert re.search(
        rf"worker {stuck} sent no heartbeat for [\d.]+s \(worker_timeout 2s\): "
        r"its event loop is blocked; SIGABRT dumps its stack",
        log,
    )
    # faulthandler's dump names the file, the line and the function that blocks.
    assert f'supervisor_apps.py", line {hang_line()} in hang' in log
    [fresh] = wait_until(lambda: (p := serve.worker_pids()) and stuck not in p and p)
    serve.wait_log(f"worker {fresh} ready")
    assert answer_pid(serve) == fresh


def keep_alive_clients(serve: ServeProcess, count: int) -> dict[int, list[socket.socket]]:
    """`count` keep-alive connections that each got one answer, by the pid that served it."""
    by_pid: dict[int, list[socket.socket]] = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", serve.port), timeout=30)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        head, _, body = sock.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        by_pid.setdefault(int(body), []).append(sock)
    return by_pid


def test_a_stopped_worker_releases_its_clients_soon_after_worker_timeout_with_a_stack(
    start_serve: StartServe,
) -> None:
    # SIGSTOP keeps the SIGABRT pending: only a SIGCONT lets faulthandler run at once
    # instead of the worker's clients waiting for the SIGKILL after the abort grace.
    serve = start_serve(APP, "--workers", "2", "--worker-timeout", "2")
    workers = wait_until(lambda: (pids := serve.worker_pids()) and len(pids) == 2 and pids)
    by_pid = keep_alive_clients(serve, 8)
    try:
        stopped = max(by_pid, key=lambda pid: len(by_pid[pid]))
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        for sock in by_pid[stopped]:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        for sock in by_pid[stopped]:
            assert connection_ends(sock)
        hang = time.monotonic() - start
        # worker_timeout 2 s, plus a heartbeat interval and a tick of slack; the abort
        # grace (5 s) used to come on top.
        assert hang < 4.5, hang
        log = serve.wait_log(f"worker {stopped} killed by SIGABRT")
        assert "Fatal Python error: Aborted" in log
        wait_until(lambda: len(serve.worker_pids()) == 2 and stopped not in serve.worker_pids())
        [fresh] = set(serve.worker_pids()) - set(workers)
        serve.wait_log(f"worker {fresh} ready")
        full = time.monotonic() - start
    finally:
        for socks in by_pid.values():
            for sock in socks:
                sock.close()
    assert full < 8.0, full


def test_a_blocked_worker_retired_by_a_reload_is_aborted_before_its_graceful_timeout(
    start_serve: StartServe,
) -> None:
    # worker_timeout leaves the reload time to retire the worker before its silence counts.
    serve = start_serve(APP, "--worker-timeout", "5", "--graceful-timeout", "120")
    [stuck] = serve.worker_pids()
    with socket.create_connection(("127.0.0.1", serve.port), timeout=60) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        serve.wait_log(f"app: worker {stuck} blocks its loop")
        serve.signal(signal.SIGHUP)
        serve.wait_log("generation 2 ready; retiring the previous workers")
        log = serve.wait_log(f"worker {stuck} killed by SIGABRT", timeout=30)
        assert connection_ends(sock)
    retired = log.index("generation 2 ready; retiring the previous workers")
    assert log.index(f"worker {stuck} sent no heartbeat for") > retired
    assert f'supervisor_apps.py", line {hang_line()} in hang' in log


def test_workers_of_a_master_killed_with_sigkill_are_gone_within_two_seconds(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2")
    workers = serve.worker_pids()
    assert answer_pid(serve) in workers
    os.kill(serve.pid, signal.SIGKILL)
    assert serve.wait_exit() == -signal.SIGKILL
    wait_until(lambda: all(is_gone(pid) for pid in workers), timeout=2.0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", serve.port), timeout=5).close()


def test_orphaned_workers_close_idle_connections_at_once_and_finish_in_flight_ones(
    start_serve: StartServe,
) -> None:
    serve = start_serve(APP, "--workers", "2", "--keep-alive-timeout", "60")
    wait_until(lambda: len(serve.worker_pids()) == 2)
    workers = serve.worker_pids()
    idle = [sock for socks in keep_alive_clients(serve, 4).values() for sock in socks]
    busy = socket.create_connection(("127.0.0.1", serve.port), timeout=30)
    try:
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        serve.wait_log("app: slow request started")
        os.kill(serve.pid, signal.SIGKILL)
        start = time.monotonic()
        for sock in idle:
            assert connection_ends(sock)
        answer = b""
        while chunk := busy.recv(65536):
            answer += chunk
        wait_until(lambda: all(is_gone(pid) for pid in workers), timeout=10)
        life = time.monotonic() - start
    finally:
        for sock in [*idle, busy]:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower()
    # The slow request's second, and a tick: not the 60 s keep-alive timeout.
    assert life < 3.0, life


def test_workers_that_always_die_before_ready_make_the_master_exit_3(
    start_serve: StartServe,
) -> None:
    serve = start_serve("supervisor_apps:dying_factory", "--factory", wait=False)
    assert serve.wait_exit() == 3
    log = serve.log()
    assert "workers died 5 times before getting ready (exited with code 1); stopping" in log
    assert log.count("dies while booting") == 5
    assert "next start in" in log
    assert "serve ready" not in log
