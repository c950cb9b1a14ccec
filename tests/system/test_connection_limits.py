"""max_connections and the file-descriptor limit against a real `serve`.

With 256 file descriptors and 1,000 clients holding idle connections, a new client is still
answered at once: the worker closes the connection idle the longest to make room, instead
of letting accept() hit EMFILE (where libuv resets every queued client until an idle
connection times out). Counts come from /metrics and the worker's warning line.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import (
    APPS_DIR,
    ServeProcess,
    StartServe,
    launch,
    status_of,
    wait_until,
    write_config,
)
from tests.h2_client import RawH2
from tests.integration.test_slow_clients import closed_by_server, many_fds
from tests.system.test_metrics import Metrics

pytestmark = pytest.mark.system

__all__ = ["many_fds"]  # the fixture, used by name

HELD = 1000
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def held_connection(stack: contextlib.ExitStack, port: int, *, request: bool) -> socket.socket:
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), 10))
    if request:
        sock.sendall(REQUEST)
        assert status_of(sock.recv(65536)) == 200
    return sock


def answer_time(port: int) -> float:
    """Seconds until a new client's request is answered 200 (it may be refused meanwhile)."""
    began = time.monotonic()

    def answered() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), 10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                return status_of(sock.recv(65536)) == 200
        except OSError:
            return False

    wait_until(answered, timeout=60, interval=0.05)
    return time.monotonic() - began


def test_new_client_answered_with_fds_exhausted_by_idle_clients(
    tmp_path: Path, many_fds: None
) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        app="overload_apps:app",
        app_dir=str(APPS_DIR),
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
        access_log=False,
        # Idle connections would otherwise give their descriptors back after 5 s anyway.
        keep_alive_timeout=120,
    )
    serve = launch(
        ["-c", str(config)],
        tmp_path / "serve.log",
        script=APPS_DIR / "low_nofile.py",
        env={"NOFILE_LIMIT": "256"},
    )
    try:
        serve.wait_ready()
        metrics = Metrics(serve)
        with contextlib.ExitStack() as stack:
            # Half of them served a request (idle keep-alive), half never sent a byte.
            held = [held_connection(stack, serve.port, request=i % 2 == 0) for i in range(HELD)]
            assert answer_time(serve.port) < 5.0
            # The ones that gave way are the oldest: the first held connection is closed.
            held[0].setblocking(False)
            wait_until(lambda: closed_by_server(held[0]))
        log = serve.wait_log(r"connection limit \d+ \(the file descriptors RLIMIT_NOFILE 256")
        assert "idle connections closed to make room" in log
        wait_until(lambda: metrics.value("serve_idle_connections_closed_total") >= HELD - 256)
    finally:
        serve.kill_group()


def start_capped(
    start_serve: StartServe, tmp_path: Path, cap: int, **keys: object
) -> tuple[ServeProcess, Metrics]:
    config = write_config(
        tmp_path / "serve.yaml",
        app="overload_apps:app",
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
        max_connections=cap,
        **keys,
    )
    serve = start_serve(config=config)
    return serve, Metrics(serve)


def test_max_connections_closes_the_oldest_idle_connection(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start_capped(start_serve, tmp_path, 3)
    with contextlib.ExitStack() as stack:
        first, second, third = (held_connection(stack, serve.port, request=True) for _ in "abc")
        fourth = held_connection(stack, serve.port, request=True)
        first.setblocking(False)
        wait_until(lambda: closed_by_server(first))
        # The others are still open and serve their next request.
        for sock in (second, third, fourth):
            sock.sendall(REQUEST)
            assert status_of(sock.recv(65536)) == 200
    metrics.wait_for("serve_idle_connections_closed_total", 1)


def test_max_connections_refuses_with_503_when_none_is_idle(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start_capped(start_serve, tmp_path, 2)
    with contextlib.ExitStack() as stack:
        busy = [held_connection(stack, serve.port, request=False) for _ in range(2)]
        for sock in busy:
            sock.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: a\r\n\r\n")
        serve.wait_log("app: sleeping /sleep", count=2)
        # Both connections have a request in flight: the third is answered 503 at once.
        with socket.create_connection(("127.0.0.1", serve.port), 10) as sock:
            response = sock.recv(65536)
        assert status_of(response) == 503
        assert b"retry-after: 1\r\n" in response.lower()
        # The busy ones were left alone.
        for sock in busy:
            sock.setblocking(False)
            assert not closed_by_server(sock)
    log = serve.wait_log("new ones refused")
    assert "connection limit 2 (max_connections) reached" in log
    metrics.wait_for("serve_connections_refused_total", 1)


def test_an_idle_http2_connection_gives_way_with_goaway(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start_capped(start_serve, tmp_path, 2, http2=True)
    client = RawH2(serve.port)
    try:
        assert client.response(client.request("/"))[:2] == (200, b"ok")
        with contextlib.ExitStack() as stack:
            held_connection(stack, serve.port, request=True)
            newest = held_connection(stack, serve.port, request=True)
            goaway = client.goaway()
            assert goaway is not None and goaway.error_code == 0
            newest.sendall(REQUEST)
            assert status_of(newest.recv(65536)) == 200
    finally:
        client.close()
    metrics.wait_for("serve_idle_connections_closed_total", 1)
