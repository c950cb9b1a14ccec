"""ASGI HTTP behaviour of a real worker, over real sockets, with httpx and raw bytes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess, raw_request, status_of

pytestmark = pytest.mark.system


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_hello_has_date_server_and_length(asgi_server: ServeProcess) -> None:
    response = httpx.get(asgi_server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-length"] == "13"
    assert response.headers["server"] == "serve"
    assert response.headers["date"].endswith("GMT")


def test_scope_is_complete(asgi_server: ServeProcess) -> None:
    response = httpx.get(asgi_server.url + "/scope?a=1&b=%20x", headers={"X-Custom": "Value"})
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1&b=%20x"
    assert scope["root_path"] == ""
    assert ["x-custom", "Value"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", asgi_server.port]
    assert scope["state"] == ["started"]


def test_path_is_percent_decoded_and_raw_path_is_not(asgi_server: ServeProcess) -> None:
    request = b"GET /scope/caf%C3%A9%2Fx?q=%C3%A9 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    body = raw_request(asgi_server.port, request).split(b"\r\n\r\n", 1)[1]
    scope = json.loads(body)
    assert scope["path"] == "/scope/caf\u00e9/x"
    assert scope["raw_path"] == "/scope/caf%C3%A9%2Fx"
    assert scope["query_string"] == "q=%C3%A9"


def test_keep_alive_serves_several_requests_on_one_connection(asgi_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_until(sock, b"Hello, world!").startswith(b"HTTP/1.1 200 OK\r\n")


def test_connection_close_is_honoured(asgi_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        response = recv_all(sock)
    assert b"connection: close\r\n" in response.lower()
    assert response.endswith(b"Hello, world!")


def test_http10_closes_unless_keep_alive_asked(asgi_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert recv_all(sock).endswith(b"Hello, world!")
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = recv_until(sock, b"Hello, world!")
            assert b"connection: keep-alive" in response.lower()


def test_pipelined_requests_are_answered_in_order(asgi_server: ServeProcess) -> None:
    requests = b"".join(
        b"GET /slow?s=%s HTTP/1.1\r\nHost: a\r\n\r\n" % delay for delay in (b"0.3", b"0", b"0.1")
    )
    requests += b"GET /scope?last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(requests)
        response = recv_all(sock)
    assert response.count(b"HTTP/1.1 200 OK") == 4
    assert response.count(b"slow done") == 3
    assert response.rstrip().endswith(b"}")


def test_a_pipeline_longer_than_one_parse_is_answered_whole_and_in_order(
    asgi_server: ServeProcess,
) -> None:
    # The server parses a bounded number of pipelined requests at a time and the rest of
    # the read later: none may be lost or reordered at those seams, bodies included.
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%d"
    requests = [
        post % (len(b"%d" % i), i)
        if i % 3 == 0
        else b"GET /scope?%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
        for i in range(300)
    ]
    requests.append(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        response = recv_all(sock)
    assert response.count(b"HTTP/1.1 200 OK") == 301
    answers = [part.split(b"\r\n\r\n", 1)[1] for part in response.split(b"HTTP/1.1 200 OK")[1:]]
    for i, answer in enumerate(answers[:300]):
        if i % 3 == 0:
            assert answer == b"%d" % i
        else:
            assert b'"query_string": "%d"' % i in answer
    assert answers[300] == b"Hello, world!"


def test_chunked_upload_is_streamed_to_the_app(asgi_server: ServeProcess) -> None:
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
    request = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    response = raw_request(asgi_server.port, request)
    assert status_of(response) == 200
    assert response.endswith(b"\r\n\r\nhello world")


def test_large_upload_round_trips(asgi_server: ServeProcess) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB: more than any socket buffer
    response = httpx.post(asgi_server.url + "/echo", content=payload, timeout=30)
    assert response.status_code == 200
    assert response.content == payload


def test_expect_100_continue_is_sent_when_the_app_reads(asgi_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = recv_until(sock, b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert recv_until(sock, b"hello").startswith(b"HTTP/1.1 200 OK")


def test_expect_100_continue_is_sent_when_the_app_reads_after_starting(
    asgi_server: ServeProcess,
) -> None:
    """http.response.start writes nothing by itself: the 100 can still precede the head."""
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo-stream HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = recv_until(sock, b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = recv_until(sock, b"hello")
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert response.endswith(b"\r\n\r\nhello")


def test_expect_100_continue_not_sent_when_the_app_does_not_read(
    asgi_server: ServeProcess,
) -> None:
    request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(request)
        response = recv_until(sock, b"Hello, world!")
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert b"100 Continue" not in response
    # The unread body makes the connection unusable, so the server says it closes.
    assert b"connection: close" in response.lower()


def test_head_has_headers_but_no_body(asgi_server: ServeProcess) -> None:
    response = raw_request(
        asgi_server.port, b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 13" in head.lower()
    assert body == b""


def test_streaming_response_is_chunked(asgi_server: ServeProcess) -> None:
    response = httpx.get(asgi_server.url + "/stream?n=10")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "".join(f"chunk{i}\n" for i in range(10))


def test_streamed_chunk_reaches_the_client_while_the_app_waits(
    asgi_server: ServeProcess, tmp_path: Path
) -> None:
    """Body messages sent in one step of the app are held to leave together: they must
    still leave as soon as the app suspends, not when it sends again or finishes."""
    flag = tmp_path / "next-event"
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(b"GET /push?flag=%s HTTP/1.1\r\nHost: a\r\n\r\n" % str(flag).encode())
        first = recv_until(sock, b"first event\n")
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert first.endswith(b"first event\n\r\n")
        flag.touch()
        rest = recv_until(sock, b"0\r\n\r\n")
    assert rest == b"d\r\nsecond event\n\r\n0\r\n\r\n"


def test_http10_streaming_is_close_delimited(asgi_server: ServeProcess) -> None:
    response = raw_request(asgi_server.port, b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"chunk0\nchunk1\nchunk2\n"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(asgi_server: ServeProcess, code: int) -> None:
    request = b"GET /status?code=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % code
    head, _, body = raw_request(asgi_server.port, request).partition(b"\r\n\r\n")
    assert status_of(head) == code
    assert body == b""
    assert b"transfer-encoding" not in head.lower()


@pytest.mark.parametrize(
    "path", ["/error", "/no-response", "/bad-header", "/too-long"], ids=lambda p: p[1:]
)
def test_app_failures_before_the_body_give_500(asgi_server: ServeProcess, path: str) -> None:
    response = httpx.get(asgi_server.url + path)
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    assert httpx.get(asgi_server.url + "/").status_code == 200


def test_app_failure_after_start_closes_the_connection(asgi_server: ServeProcess) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(asgi_server.url + "/error-after-start")
    assert httpx.get(asgi_server.url + "/").status_code == 200
    assert "boom after start" in asgi_server.log()


def test_disconnect_is_delivered_and_a_late_send_raises(asgi_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10) as sock:
        sock.sendall(b"POST /wait-disconnect HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    asgi_server.wait_log("app: send after disconnect raised ClientDisconnected")
    assert "app: received http.disconnect" in asgi_server.log()
    assert httpx.get(asgi_server.url + "/").status_code == 200


def test_access_log_escapes_control_characters(asgi_server: ServeProcess) -> None:
    request = b"GET /inject%0Aevil HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert status_of(raw_request(asgi_server.port, request)) == 200
    log = asgi_server.wait_log("inject")
    line = next(line for line in log.splitlines() if "inject" in line)
    assert '"GET /inject\\x0aevil HTTP/1.1" 200' in line
    assert not any(text.startswith("evil") for text in log.splitlines())


def test_upgrade_request_is_served_as_plain_http_with_its_body(asgi_server: ServeProcess) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello"
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    response = raw_request(asgi_server.port, request)
    assert response.count(b"HTTP/1.1 200 OK") == 2
    assert b"\r\n\r\nhello" in response
    assert response.endswith(b"Hello, world!")
