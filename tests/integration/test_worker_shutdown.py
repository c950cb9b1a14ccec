"""Graceful drain: in-flight requests finish, new connections are refused, lifespan ends."""

from __future__ import annotations

import signal
import socket
import threading

import httpx
import pytest

from tests.conftest import StartServe, wait_until

pytestmark = pytest.mark.system


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_in_flight_request_then_exits_0(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app")
    results: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: results.append(httpx.get(server.url + "/slow?s=2", timeout=30))
    )
    client.start()
    server.wait_log("slow request started")
    server.signal(signal.SIGTERM)
    wait_until(lambda: refused(server.port), timeout=10)
    client.join(30)
    assert results, "the in-flight request got no response"
    assert results[0].status_code == 200
    assert results[0].text == "slow done"
    assert results[0].headers["connection"] == "close"
    assert server.wait_exit(30) == 0
    assert "app: lifespan shutdown complete" in server.log()


@pytest.mark.parametrize("preload", [[], ["--preload"]], ids=["fork", "preload"])
def test_a_new_connection_is_refused_at_once_while_a_slow_request_drains(
    start_serve: StartServe, preload: list[str]
) -> None:
    # Every process holding the listener closes it on TERM: a connection the kernel
    # accepted would sit in the backlog unanswered and be reset when the master exits.
    # With preload the template holds the listeners too, and leaves at once.
    server = start_serve("asgi_apps:app", "--workers", "2", *preload)
    results: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: results.append(httpx.get(server.url + "/slow?s=4", timeout=30))
    )
    client.start()
    server.wait_log("slow request started")
    server.signal(signal.SIGTERM)
    server.wait_log("shutting down")
    wait_until(lambda: refused(server.port), timeout=1.0)
    assert not results, "refused only once the drain was over"
    client.join(30)
    assert results[0].status_code == 200
    assert server.wait_exit(30) == 0


def test_idle_keep_alive_connection_gets_its_next_request_answered(
    start_serve: StartServe,
) -> None:
    server = start_serve("asgi_apps:app", "--keep-alive-timeout", "5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        server.signal(signal.SIGTERM)
        server.wait_log("shutting down")
        # The connection is still open while the client may be sending on it; the next
        # request is served and told the connection ends.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in response.lower()
    assert server.wait_exit(30) == 0
