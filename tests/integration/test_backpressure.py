"""Backpressure both ways: a slow app stops reading, a slow client stops the app's sends."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServeProcess, StartServe, wait_until

pytestmark = pytest.mark.system

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled(read: Callable[[], int], quiet_checks: int = 10) -> int:
    """Wait until `read()` returns the same value `quiet_checks` polls in a row."""
    history: list[int] = []

    def stable() -> bool:
        history.append(read())
        return len(history) > quiet_checks and len(set(history[-quiet_checks:])) == 1

    wait_until(stable, timeout=30, interval=0.1)
    return history[-1]


def only_worker(server: ServeProcess) -> int:
    pids = server.worker_pids()
    assert len(pids) == 1
    return pids[0]


def test_app_not_reading_pauses_the_upload(start_serve: StartServe, tmp_path: Path) -> None:
    server = start_serve("asgi_apps:app", "--max-body-size", "1GiB")
    worker = only_worker(server)
    flag = tmp_path / "go"
    total = 200 * MIB
    sent = [0]
    reply: list[bytes] = []

    def upload() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            head = b"POST /stall-upload?flag=%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
            sock.sendall(head % (str(flag).encode(), total) + b"Connection: close\r\n\r\n")
            piece = b"u" * MIB
            for _ in range(total // MIB):
                sock.sendall(piece)
                sent[0] += MIB
            while data := sock.recv(65536):
                reply.append(data)

    baseline = rss_bytes(worker)
    client = threading.Thread(target=upload)
    client.start()
    server.wait_log("app: upload stalled")
    stuck_at = settled(lambda: sent[0])
    # The client is blocked by TCP flow control, so the server holds only a bounded amount.
    assert stuck_at < total
    assert rss_bytes(worker) - baseline < 32 * MIB
    flag.touch()
    client.join(60)
    assert b"".join(reply).endswith(b"\r\n\r\n" + str(total).encode())


def test_client_not_reading_blocks_the_apps_send(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--no-access-log")
    chunks = 2000  # 125 MiB, far beyond what socket buffers hold
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            b"GET /big-stream?n=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % chunks
        )

        def progress() -> int:
            found = re.findall(r"app: sent chunk (\d+)", server.log())
            return int(found[-1]) if found else 0

        stalled = settled(progress)
        assert 0 < stalled < chunks
        received = 0
        while data := sock.recv(MIB):
            received += len(data)
    assert received > chunks * 65536
    assert progress() == chunks


def test_pipelined_requests_a_client_never_reads_cost_little_memory(
    start_serve: StartServe,
) -> None:
    # Each connection pipelines far more tiny requests than socket buffers hold and reads
    # no answer: the worker must stop reading, as for any other backpressure, rather than
    # parse a whole read (thousands of requests) into waiting request cycles.
    server = start_serve("asgi_apps:app", "--no-access-log")
    worker = only_worker(server)
    connections, flood = 16, 8 * MIB
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    data = request * (flood // len(request))
    sent = [0] * connections
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(connections)]

    def pipeline(index: int) -> None:
        sock = socks[index]
        with contextlib.suppress(OSError):
            view = memoryview(data)
            while view:
                count = sock.send(view[: 64 * 1024])
                sent[index] += count
                view = view[count:]

    baseline = rss_bytes(worker)
    threads = [
        threading.Thread(target=pipeline, args=(i,), daemon=True) for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    try:
        stuck_at = settled(lambda: sum(sent))
        assert stuck_at < connections * len(data)
        growth = rss_bytes(worker) - baseline
        assert growth < connections * MIB, f"{growth / MIB:.1f} MiB for {connections} connections"
        # The worker still serves everyone else.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert other.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()
        for thread in threads:
            thread.join(10)
