"""A client that half-closes (shutdown(SHUT_WR), `nc -N`, `printf ... | nc`): whatever it
sent whole is answered, in order, before the server closes; what it cut short gets 400."""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import ServeProcess
from tests.integration.test_http_asgi import recv_all

pytestmark = pytest.mark.system

GET = b"GET /scope?%d HTTP/1.1\r\nHost: a\r\n\r\n"


def half_closed(port: int, data: bytes) -> bytes:
    """Send `data`, shut our sending side, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def statuses(response: bytes) -> list[bytes]:
    # Bodies have no line end of their own: a status line may follow one directly.
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", response)


@pytest.mark.parametrize("count", [1, 2, 5, 32, 33, 100])
def test_every_request_sent_before_the_half_close_is_answered_in_order(
    asgi_server: ServeProcess, count: int
) -> None:
    # 33 and 100 are more than the server parses from one read: the rest waits, held.
    response = half_closed(asgi_server.port, b"".join(GET % i for i in range(count)))
    assert statuses(response) == [b"200"] * count
    order = [response.index(b'"query_string": "%d"' % i) for i in range(count)]
    assert order == sorted(order)


def test_a_slow_response_still_reaches_a_client_that_half_closed(
    asgi_server: ServeProcess,
) -> None:
    slow = b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
    response = half_closed(asgi_server.port, slow + slow)
    assert statuses(response) == [b"200", b"200"]
    assert response.count(b"slow done") == 2


def test_a_request_cut_short_by_the_half_close_is_answered_400_after_the_others(
    asgi_server: ServeProcess,
) -> None:
    response = half_closed(asgi_server.port, GET % 0 + GET % 1 + b"GET /cut HTTP/1.1\r\nHo")
    assert statuses(response) == [b"200", b"200", b"400"]


def test_a_body_cut_short_by_the_half_close_is_answered_400(asgi_server: ServeProcess) -> None:
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf"
    response = half_closed(asgi_server.port, GET % 0 + post)
    assert statuses(response) == [b"200", b"400"]


def test_a_client_that_half_closes_having_sent_nothing_is_closed(
    asgi_server: ServeProcess,
) -> None:
    assert half_closed(asgi_server.port, b"") == b""


def test_an_app_waiting_for_more_than_its_body_hears_the_client_left(
    asgi_server: ServeProcess,
) -> None:
    # A half-close and a close are the same FIN: an app that listens for the disconnect
    # (long-poll, server-sent events) must not wait on a client that may be gone.
    wait = b"POST /wait-disconnect HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    before = asgi_server.log().count("app: received http.disconnect")
    assert half_closed(asgi_server.port, GET % 0 + wait).startswith(b"HTTP/1.1 200 ")
    asgi_server.wait_log("app: send after disconnect raised ClientDisconnected")
    assert asgi_server.log().count("app: received http.disconnect") == before + 1
