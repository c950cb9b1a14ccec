"""What serve answers itself, in place of the app, is in the access log and the status
counts like any response: a malformed or oversized head ("-" for the request it could not
read), a body whose framing breaks while its app runs, a refused WebSocket or h2c upgrade
(the request line it did read), and a connection refused over limit_concurrency. So is a
response the client cut short, as it stood when the client left."""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

import h2.events as ev
import httpx
import pytest
import trustme

from tests.conftest import StartServe, raw_request, status_of, wait_until, write_config
from tests.h2_client import RawH2
from tests.system.test_metrics import Metrics
from tests.tls_certs import client_context, server_leaf, write_leaf

pytestmark = pytest.mark.system

APP = "asgi_apps:app"
# An access line of the default text format: request line, status, body bytes, duration.
LINE = re.compile(
    r'INFO serve\.access: 127\.0\.0\.1:\d+ - "(?P<request>[^"]*)" (?P<status>\d{3}) '
    r"(?P<bytes>\d+) (?P<ms>\d+\.\d)ms$"
)
BROKEN_CHUNK = (
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n"
)
WS_WITHOUT_KEY = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
H2C_WITHOUT_SETTINGS = (
    b"GET /h2 HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
)


def access_lines(log: str) -> list[tuple[str, int, int, str]]:
    return [
        (m["request"], int(m["status"]), int(m["bytes"]), m["ms"])
        for m in map(LINE.search, log.splitlines())
        if m
    ]


def config(tmp_path: Path, **keys: object) -> Path:
    # Every line written at once, and HTTP/2 on: each test reads lines as they happen.
    keys = {"app": APP, "bind": "127.0.0.1:0", "http2": {"enabled": True}, **keys}
    return write_config(tmp_path / "serve.yaml", access_log_buffer_size=0, **keys)


def test_the_servers_own_answers_are_logged_and_counted(
    start_serve: StartServe, tmp_path: Path
) -> None:
    metrics_listener = {"bind": "127.0.0.1:0"}
    serve = start_serve(config=config(tmp_path, metrics=metrics_listener, max_body_size=1024))
    metrics = Metrics(serve)
    port = serve.port
    answers = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (BROKEN_CHUNK, 400),
        (WS_WITHOUT_KEY, 400),
        (H2C_WITHOUT_SETTINGS, 400),
    ]
    for request, status in answers:
        assert status_of(raw_request(port, request)) == status
    # HTTP/2: a body declared over max_body_size (no app), then one that grows over it.
    client = RawH2(port)
    declared = client.request("/echo", "POST", end=False, extra=((b"content-length", b"4096"),))
    assert client.response(declared)[0] == 413
    grown = client.request("/echo", "POST", end=False)
    client.conn.send_data(grown, b"x" * 2048)
    client.flush()
    assert client.response(grown)[0] == 413
    client.close()

    expected = [
        ("-", 400, len(b"Bad Request"), "0.0"),
        ("-", 431, len(b"Request Header Fields Too Large"), "0.0"),
        ("POST /echo HTTP/1.1", 400, len(b"Bad Request")),
        ("GET /ws HTTP/1.1", 400, len(b"Bad Request")),
        ("GET /h2 HTTP/1.1", 400, len(b"Bad Request")),
        ("-", 413, 0, "0.0"),
        ("POST /echo HTTP/2", 413, 0),
    ]
    wait_until(lambda: len(access_lines(serve.log())) == len(expected), timeout=15)
    lines = access_lines(serve.log())
    assert [line[: len(want)] for line, want in zip(lines, expected, strict=True)] == expected
    # Seven responses, each written once; four of them answered a request head.
    metrics.wait_for("serve_responses_total", 7, status_class="4xx")
    metrics.wait_for("serve_requests_total", 4)
    assert serve.stop() == 0
    assert len(access_lines(serve.log())) == len(expected)


def test_connections_refused_over_limit_concurrency_are_logged_on_both_protocols(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # Over TLS, so that an HTTP/2 client (ALPN h2) reads HTTP/2's own 503 on its first stream.
    ca = trustme.CA()
    cert = write_leaf(server_leaf(ca), tmp_path, "server")
    ssl = {"certfile": str(cert.certfile), "keyfile": str(cert.keyfile)}
    serve = start_serve(config=config(tmp_path, ssl=ssl, limit_concurrency=1))
    base = f"https://127.0.0.1:{serve.port}"

    def client(http2: bool) -> httpx.Client:
        return httpx.Client(
            base_url=base, http1=not http2, http2=http2, verify=client_context(ca), timeout=10
        )

    with client(http2=False) as held:
        assert held.get("/scope").status_code == 200
        # The held connection is the one allowed: HTTP/1.1 and HTTP/2 clients get 503.
        with client(http2=False) as over:
            assert over.get("/").status_code == 503
        with client(http2=True) as over:
            refused = over.get("/")
            assert (refused.http_version, refused.status_code) == ("HTTP/2", 503)
        no_request = ("-", 503, len(b"Service Unavailable"), "0.0")
        wait_until(lambda: access_lines(serve.log())[1:] == [no_request, no_request], timeout=15)
    assert access_lines(serve.log())[0][:2] == ("GET /scope HTTP/1.1", 200)


def test_a_response_the_client_cuts_is_logged_as_it_stood_on_both_protocols(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve(config=config(tmp_path))
    flag = tmp_path / "go"
    # HTTP/1.1: the client reads the first event of a stream, then resets the connection (a
    # FIN alone is a half-close, which still gets the rest of the response).
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        sock.sendall(f"GET /push?flag={flag} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        seen = b""
        while b"first event" not in seen:
            seen += sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # HTTP/2: the client resets the stream after its first event; the connection stays.
    client = RawH2(serve.port)
    stream = client.request(f"/push?flag={flag}")
    client.read_until(lambda event: isinstance(event, ev.DataReceived))
    client.conn.reset_stream(stream)
    client.flush()
    # Accounted when the client leaves, though both apps still wait for their next event.
    cut = [(f"GET /push?flag={flag} HTTP/1.1", 200), (f"GET /push?flag={flag} HTTP/2", 200)]
    wait_until(lambda: logged(serve.log()) == cut, timeout=15)
    client.close()
    flag.touch()
    # A client that leaves before the response begins has no line (as with uvicorn): the
    # app hears the disconnect, and its send then raises.
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: a\r\n\r\n")
    serve.wait_log("send after disconnect raised ClientDisconnected")
    assert (
        status_of(
            raw_request(serve.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        )
        == 200
    )
    wait_until(lambda: len(logged(serve.log())) == 3, timeout=15)
    assert logged(serve.log())[2:] == [("GET / HTTP/1.1", 200)]


def logged(log: str) -> list[tuple[str, int]]:
    return [line[:2] for line in access_lines(log)]


def test_a_websocket_the_app_closes_before_accepting_logs_the_servers_403_body(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve(config=config(tmp_path, app="ws_apps:starlette_app"))
    handshake = (
        b"GET /deny HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert status_of(raw_request(serve.port, handshake)) == 403
    wait_until(lambda: access_lines(serve.log()), timeout=15)
    assert [line[:3] for line in access_lines(serve.log())] == [
        ("GET /deny HTTP/1.1", 403, len(b"Forbidden"))
    ]
