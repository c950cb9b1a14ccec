"""Slow and many clients: slowloris heads, peers that never read, more clients than allowed.

Each test bounds its counts and waits (wait_until, socket timeouts), never sleeps, and
checks that a well-behaved client is still served while the bad ones are around.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServe, status_of, wait_until, write_config

pytestmark = pytest.mark.system

MIB = 1024 * 1024
SLOWLORIS = 1000
CHUNK = 65536


def status_value(pid: int, field: str) -> int:
    """A memory figure (bytes) from /proc/PID/status: VmRSS now, VmHWM the peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Room for the test's sockets; the server started afterwards inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * SLOWLORIS
    raised_hard = hard if hard == resource.RLIM_INFINITY else max(hard, needed)
    try:
        # Raising the hard limit needs root (as in CI); a normal user's is usually enough.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), raised_hard))
    except (ValueError, PermissionError):
        pytest.fail(f"this test needs {needed} file descriptors; the hard limit is {hard}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (EOF or reset); never blocks."""
    try:
        while sock.recv(CHUNK):
            continue
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_slowloris_heads_do_not_block_others_and_time_out(
    start_serve: StartServe, tmp_path: Path, many_fds: None
) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        app="asgi_apps:app",
        bind="127.0.0.1:0",
        header_timeout=1,
        access_log=False,
    )
    server = start_serve(config=config)
    with contextlib.ExitStack() as stack:
        slow = []
        for _ in range(SLOWLORIS):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
            # A head that never ends: the server must not wait for the rest forever.
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            sock.setblocking(False)
            slow.append(sock)
        response = httpx.get(server.url + "/", timeout=10)
        assert response.status_code == 200
        assert response.text == "Hello, world!"
        open_ones = list(slow)

        def all_closed() -> bool:
            open_ones[:] = [s for s in open_ones if not closed_by_server(s)]
            return not open_ones

        wait_until(all_closed, timeout=30, interval=0.1)
    assert httpx.get(server.url + "/", timeout=10).status_code == 200


def test_client_that_never_reads_is_dropped_after_send_timeout(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        app="asgi_apps:app",
        bind="127.0.0.1:0",
        send_timeout=1,
        access_log=False,
    )
    server = start_serve(config=config)
    (worker,) = server.worker_pids()
    baseline = status_value(worker, "VmRSS")
    chunks = 2000  # 125 MiB: without paused writes the worker would buffer all of it
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big-stream?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % chunks)
        # Once the connection is dropped, the blocked send() raises (ASGI spec 2.4): the
        # app does not believe the rest of its stream went out.
        log = server.wait_log(r"app: send raised ClientDisconnected after chunk \d+", timeout=30)
        assert "chunks complete" not in log
        assert status_value(worker, "VmHWM") - baseline < 32 * MIB
        # Another client is served meanwhile and afterwards.
        assert httpx.get(server.url + "/", timeout=10).status_code == 200
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(MIB):
                received += len(data)
    assert 0 < received < chunks * CHUNK
    sent = [int(n) for n in re.findall(r"app: sent chunk (\d+)", server.log())]
    [last] = map(int, re.findall(r"app: send raised ClientDisconnected after chunk (\d+)", log))
    assert sent == list(range(1, last + 1))
    assert last < chunks


def test_limit_concurrency_with_many_connections(start_serve: StartServe) -> None:
    limit, extra = 10, 50
    server = start_serve("asgi_apps:app", "--limit-concurrency", str(limit), "--no-access-log")

    def hold(stack: contextlib.ExitStack, count: int) -> list[int]:
        """Open `count` connections and make one request on each; their statuses."""
        statuses = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            statuses.append(status_of(sock.recv(65536)))
        return statuses

    with contextlib.ExitStack() as stack:
        assert hold(stack, limit) == [200] * limit
        # Beyond the limit the answer comes unasked, right after the connection is accepted
        # (the clients send nothing, so the server's close cannot turn into a reset).
        over = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 10))
            for _ in range(extra)
        ]
        assert [status_of(sock.recv(65536)) for sock in over] == [503] * extra

    def whole_limit_again() -> bool:
        with contextlib.ExitStack() as stack:
            return hold(stack, limit) == [200] * limit

    # The held connections are gone: the whole limit is available again.
    wait_until(whole_limit_again, interval=0.1)
