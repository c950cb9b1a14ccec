"""RFC 9112 hostile input and limits over real sockets: a 4xx and a close, never a 2xx.

After every case the same worker must still serve a normal client (one worker, so a crash
or a wedged loop would show).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, launch, raw_request, status_of

pytestmark = pytest.mark.system

H = b"Host: a\r\n"

CASES: dict[str, tuple[bytes, int]] = {
    "cl-and-te": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\n",
        400,
    ),
    "duplicate-differing-cl": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    "non-numeric-cl": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    "signed-cl": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    "negative-cl": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "te-gzip-chunked": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    "te-chunked-not-last": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-twice": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-identity": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        None,
    ),
    "te-xchunked": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    "te-on-http10": (
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "bad-chunk-size": (
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk-data-without-crlf": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    "huge-chunk-size": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n", 400),
    "bare-cr": (b"GET / HTTP/1.1\r\n" + H + b"X-A: one\rtwo\r\n\r\n", 400),
    "bare-lf-terminator": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "ctl-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x07b\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "duplicate-host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "invalid-host": (b"GET / HTTP/1.1\r\nHost: a b@c\r\n\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "ctl-in-target": (b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "double-space-request-line": (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "http-2-0-version": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "http-1-2-version": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    "garbage-version": (b"GET / HTTQ/1.1\r\n" + H + b"\r\n", 400),
}


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log_path = tmp_path_factory.mktemp("hostile") / "serve.log"
    args = ["asgi_apps:app", "--bind", "127.0.0.1:0", "--max-body-size", "1000"]
    proc = launch(args, log_path)
    try:
        yield proc.wait_ready()
    finally:
        proc.kill_group()


def assert_still_serves(server: ServeProcess) -> None:
    assert httpx.get(server.url + "/").status_code == 200


def assert_rejected(response: bytes, expected: int | None) -> None:
    status = status_of(response)
    assert 400 <= status < 600, response[:200]
    assert status < 500 or status in (501, 505), response[:200]
    if expected is not None:
        assert status == expected, response[:200]
    # One response and the connection closed: nothing of the request reached the app.
    assert response.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in response.lower()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_request_is_rejected(hostile_server: ServeProcess, name: str) -> None:
    request, expected = CASES[name]
    assert_rejected(raw_request(hostile_server.port, request), expected)
    assert_still_serves(hostile_server)


def test_smuggled_request_after_cl_te_is_not_served(hostile_server: ServeProcess) -> None:
    smuggle = b"GET /scope HTTP/1.1\r\n" + H + b"\r\n"
    body = b"0\r\n\r\n" + smuggle
    request = (
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Content-Length: %d\r\n" % len(body)
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + body
    )
    response = raw_request(hostile_server.port, request)
    assert status_of(response) == 400
    assert b'"type"' not in response


def test_absolute_form_target_sets_path_and_query(hostile_server: ServeProcess) -> None:
    request = (
        b"GET http://example.com/scope/x?y=1 HTTP/1.1\r\nHost: example.com\r\n"
        b"Connection: close\r\n\r\n"
    )
    response = raw_request(hostile_server.port, request)
    assert status_of(response) == 200
    assert b'"path": "/scope/x"' in response
    assert b'"query_string": "y=1"' in response


def test_trailers_are_not_merged_into_headers(hostile_server: ServeProcess) -> None:
    request = (
        b"POST /scope HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n1\r\nx\r\n0\r\nX-Evil: yes\r\n\r\n"
    )
    response = raw_request(hostile_server.port, request)
    assert status_of(response) == 200
    assert b"x-evil" not in response.lower()


def test_header_values_are_trimmed(hostile_server: ServeProcess) -> None:
    request = b"GET /scope HTTP/1.1\r\n" + H + b"X-Pad: \t value \t\r\nConnection: close\r\n\r\n"
    response = raw_request(hostile_server.port, request)
    assert b'["x-pad", "value"]' in response


# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# and RFC 9110 §5.6.3: a recipient parses and removes BWS. Extensions are ignored.
VALID_CHUNK_LINES = (b"5 ; name=value", b"5; a; b=c", b"5;a = b", b'5\t;\tq = "x \\" y"', b"5;a")
INVALID_CHUNK_LINES = {
    "bare-cr": b"5;a\rb",
    "missing-name": b"5; =b",
    "empty-extension": b"5;;a",
    "control-character": b"5;a=\x01",
    "unterminated-quoted-value": b'5;a="open',
    "trailing-whitespace": b"5;a=b ",
    "space-in-size": b"5 5",
}


def chunked_echo(line: bytes) -> bytes:
    return (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + line + b"\r\nhello\r\n0\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize("line", VALID_CHUNK_LINES)
def test_chunk_extensions_with_whitespace_are_accepted(
    hostile_server: ServeProcess, line: bytes
) -> None:
    response = raw_request(hostile_server.port, chunked_echo(line))
    assert status_of(response) == 200, response
    assert response.endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize("name", sorted(INVALID_CHUNK_LINES))
def test_chunk_lines_outside_the_grammar_are_refused(
    hostile_server: ServeProcess, name: str
) -> None:
    assert_rejected(raw_request(hostile_server.port, chunked_echo(INVALID_CHUNK_LINES[name])), 400)
    assert_still_serves(hostile_server)


LIMITS: dict[str, tuple[bytes, int]] = {
    "request-line-414": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "head-431": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
    "headers-count-431": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        431,
    ),
    "body-cl-413": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n", 413),
    "body-chunked-413": (
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"64\r\n" + b"x" * 100 + b"\r\n" for _ in range(20))
        + b"0\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limits(hostile_server: ServeProcess, name: str) -> None:
    request, expected = LIMITS[name]
    assert_rejected(raw_request(hostile_server.port, request), expected)
    assert_still_serves(hostile_server)


def test_oversized_body_answered_before_it_is_sent(hostile_server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", hostile_server.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 100000000\r\n\r\n")
        response = sock.recv(65536)
    assert status_of(response) == 413


def test_slow_header_is_cut_off(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        # Nothing more is sent: the server must give up on this client by itself.
        assert sock.recv(65536) == b""
    assert_still_serves(server)
