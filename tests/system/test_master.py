"""The master as operators meet it: real `python -m supervisor`, real signals, real workers.

Each test reads pids from /proc and waits on log lines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.apps.master_apps import STARTUP_FAILURE
from tests.conftest import ServeProcess, StartServe, wait_until

pytestmark = pytest.mark.system


def served_by(serve: ServeProcess) -> int:
    """The pid of the worker that answered one request on a fresh connection."""
    response = httpx.get(serve.url, headers={"connection": "close"}, timeout=10)
    assert response.status_code == 200
    return int(response.text)


def worker_count(serve: ServeProcess, count: int) -> list[int]:
    pids: list[int] = wait_until(
        lambda: (found := serve.worker_pids()) and len(found) == count and found
    )
    return pids


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def slow_request_in_flight(serve: ServeProcess) -> Iterator[socket.socket]:
    """A request the app holds for a minute, already inside the app when this yields."""
    with socket.create_connection(("127.0.0.1", serve.port), timeout=30) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        serve.wait_log("app: slow request started")
        yield sock


def test_every_worker_is_a_separate_process_that_serves(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app", "--workers", "2")
    pids = worker_count(serve, 2)
    assert serve.pid not in pids
    seen: set[int] = set()

    def every_worker_answered() -> bool:
        seen.add(served_by(serve))
        return seen == set(pids)

    # The kernel hands each connection to whichever worker accepts first: keep asking.
    wait_until(every_worker_answered, timeout=30)
    log = serve.log()
    assert log.count("serve ready (2 workers)") == 1
    for pid in pids:
        assert f"worker {pid} booting (gen 1)" in log
        assert f"worker {pid} ready" in log


def test_a_killed_worker_is_replaced_and_service_continues(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app", "--workers", "2")
    before = worker_count(serve, 2)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    serve.wait_log(f"worker {victim} killed by SIGKILL")
    after = wait_until(lambda: (p := serve.worker_pids()) and len(p) == 2 and victim not in p and p)
    [new] = set(after) - set(before)
    serve.wait_log(f"worker {new} ready")
    for _ in range(5):
        assert served_by(serve) in after
    assert serve.proc.poll() is None


def test_sigterm_stops_workers_and_exits_zero(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app", "--workers", "2")
    pids = worker_count(serve, 2)
    serve.signal(signal.SIGTERM)
    assert serve.wait_exit() == 0
    log = serve.log()
    assert "shutting down (graceful)" in log
    assert log.rstrip().endswith("serve stopped")
    assert all(is_gone(pid) for pid in pids)


def test_sigquit_exits_at_once_despite_a_request_in_flight(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app")
    with slow_request_in_flight(serve):
        serve.signal(signal.SIGQUIT)
        assert serve.wait_exit(timeout=15) == 0
    assert "shutting down (immediate)" in serve.log()


def test_a_second_sigint_stops_waiting_for_the_drain(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app")
    with slow_request_in_flight(serve):
        serve.signal(signal.SIGINT)
        serve.wait_log("shutting down \\(graceful\\)")
        # The worker is draining a request that lasts a minute: the master waits for it.
        assert serve.proc.poll() is None
        serve.signal(signal.SIGINT)
        serve.wait_log("shutting down \\(immediate\\)")
        assert serve.wait_exit(timeout=15) == 0
    assert "serve stopped" in serve.log()


def test_an_app_that_cannot_be_imported_halts_with_exit_4(start_serve: StartServe) -> None:
    serve = start_serve("master_broken_app:app", "--workers", "2", wait=False)
    assert serve.wait_exit() == 4
    log = serve.log()
    assert "failed to boot" in log
    assert "master_broken_app" in log
    # Each slot booted once: the master halted instead of respawning.
    assert log.count("booting (gen 1)") == 2
    assert "serve ready" not in log


def test_a_failing_lifespan_startup_halts_with_exit_3(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:failing_startup", wait=False)
    assert serve.wait_exit() == 3
    log = serve.log()
    assert "failed to boot" in log
    assert STARTUP_FAILURE in log
    assert log.count("booting (gen 1)") == 1


def test_sigterm_while_a_worker_boots_stops_promptly(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:slow_startup", wait=False)
    serve.wait_log("app: startup is waiting")
    [pid] = serve.worker_pids()
    serve.signal(signal.SIGTERM)
    assert serve.wait_exit(timeout=15) == 0
    assert is_gone(pid)
    assert "serve ready" not in serve.log()


def test_a_worker_stopped_while_importing_the_app_is_no_warning(start_serve: StartServe) -> None:
    serve = start_serve("master_slow_import_app:app", wait=False)
    serve.wait_log("app: import is waiting")
    [pid] = serve.worker_pids()
    serve.signal(signal.SIGTERM)
    assert serve.wait_exit(timeout=15) == 0
    log = serve.log()
    assert f"INFO serve.master: worker {pid} stopped while booting (killed by SIGTERM)" in log
    assert "WARNING" not in log


def test_ttin_and_ttou_change_the_number_of_workers(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app")
    [first] = worker_count(serve, 1)
    serve.signal(signal.SIGTTIN)
    serve.wait_log("SIGTTIN: scaling up to 2 workers")
    [second] = set(worker_count(serve, 2)) - {first}
    serve.wait_log(f"worker {second} ready")
    serve.signal(signal.SIGTTOU)
    serve.wait_log("SIGTTOU: scaling down to 1 worker\n")
    assert worker_count(serve, 1) == [first]
    serve.signal(signal.SIGTTOU)
    serve.wait_log("SIGTTOU: keeping the last worker")
    assert serve.worker_pids() == [first]
    assert served_by(serve) == first


def test_a_busy_address_exits_2_naming_it(start_serve: StartServe) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        serve = start_serve(
            "master_apps:app", "--bind", f"127.0.0.1:{port}", bind=False, wait=False
        )
        assert serve.wait_exit() == 2
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in serve.log()


def test_serves_on_a_unix_socket_and_removes_it(start_serve: StartServe, tmp_path: Path) -> None:
    path = tmp_path / "serve.sock"
    serve = start_serve("master_apps:app", "--bind", f"unix:{path}", bind=False)
    assert f"Listening on unix:{path}" in serve.log()
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport) as client:
        response = client.get("http://localhost/")
    assert int(response.text) in serve.worker_pids()
    assert serve.stop() == 0
    assert not path.exists()


def test_sighup_replaces_every_worker_without_failing_requests(start_serve: StartServe) -> None:
    serve = start_serve("master_apps:app", "--workers", "2")
    old = set(worker_count(serve, 2))
    serve.signal(signal.SIGHUP)
    answered: list[int] = []

    def rolled() -> bool:
        answered.append(served_by(serve))
        return "generation 2 ready; retiring the previous workers" in serve.log()

    wait_until(rolled, timeout=30)
    new = set(wait_until(lambda: (p := serve.worker_pids()) and not set(p) & old and p))
    assert len(new) == 2
    assert set(answered) <= old | new
    assert served_by(serve) in new
    assert all(is_gone(pid) for pid in old)
