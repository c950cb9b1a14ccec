"""request_timeout against a real `serve`: the app is cancelled and the client answered.

HTTP/1.1 and HTTP/2 share one deadline (server.deadline); each test checks what the client
sees, what the app's cancellation handlers logged, and the counter in /metrics.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import h2.events as ev
import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, raw_request, status_of, write_config
from tests.h2_client import RawH2
from tests.system.test_metrics import Metrics

pytestmark = pytest.mark.system

TIMEOUT_S = 0.5
# Generous: the deadline is half a second, the machine may be busy.
BOUND_S = 10.0


def start(start_serve: StartServe, tmp_path: Path, **keys: object) -> tuple[ServeProcess, Metrics]:
    config = write_config(
        tmp_path / "serve.yaml",
        app="overload_apps:app",
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
        request_timeout=TIMEOUT_S,
        **keys,
    )
    serve = start_serve(config=config)
    return serve, Metrics(serve)


def get(serve: ServeProcess, path: str) -> bytes:
    return raw_request(serve.port, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode(), BOUND_S)


def test_http1_app_cancelled_and_answered_504_with_close(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path, http2=True)
    began = time.monotonic()
    response = get(serve, "/sleep?s=60")
    assert time.monotonic() - began < BOUND_S
    assert status_of(response) == 504
    head = response.split(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in head
    log = serve.wait_log("app: finally /sleep")
    assert "app: cancelled /sleep" in log
    assert re.search(r"request_timeout \(0\.5 s\): cancelled GET /sleep; answered 504", log)
    # The access log counts it, once its buffer is flushed (access_log_flush_interval).
    serve.wait_log(r'"GET /sleep\?s=60 HTTP/1\.1" 504')
    # The worker goes on serving, and requests under the deadline are untouched.
    assert httpx.get(serve.url + "/sleep?s=0.01", timeout=BOUND_S).text == "slept"
    metrics.wait_for("serve_request_timeouts_total", 1)


def test_http1_response_under_way_is_cut(start_serve: StartServe, tmp_path: Path) -> None:
    serve, metrics = start(start_serve, tmp_path)
    response = get(serve, "/stream?s=60")
    assert status_of(response) == 200
    assert b"first" in response
    # Chunked framing never got its last chunk: the client can tell the response is cut.
    assert not response.endswith(b"0\r\n\r\n")
    assert b"last" not in response
    log = serve.wait_log("app: finally /stream")
    assert "cancelled GET /stream; response cut" in log
    metrics.wait_for("serve_request_timeouts_total", 1)


def test_http2_stream_answered_504_and_the_connection_serves_on(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path, http2=True)
    client = RawH2(serve.port, timeout=BOUND_S)
    try:
        slow = client.request("/sleep?s=60")
        status, body, _ = client.response(slow)
        assert (status, body) == (504, b"Gateway Timeout")
        fast = client.request("/")
        assert client.response(fast)[:2] == (200, b"ok")
        streaming = client.request("/stream?s=60")
        event = client.read_until(
            lambda e: isinstance(e, (ev.StreamReset, ev.StreamEnded)) and e.stream_id == streaming
        )
        assert isinstance(event, ev.StreamReset)
        assert client.response(client.request("/"))[:2] == (200, b"ok")
    finally:
        client.close()
    log = serve.wait_log("app: finally /stream")
    assert "app: cancelled /sleep" in log
    metrics.wait_for("serve_request_timeouts_total", 2)


def test_work_after_a_complete_response_is_left_alone(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path)
    response = httpx.get(serve.url + "/background?s=1.5", timeout=BOUND_S)
    assert response.text == "done"
    serve.wait_log("app: background finished /background")
    # The heartbeat after the app returned: still no timeout counted.
    metrics.wait_for("serve_requests_total", 1)
    assert metrics.value("serve_request_timeouts_total") == 0


def test_off_by_default(start_serve: StartServe) -> None:
    serve = start_serve("overload_apps:app")
    with socket.create_connection(("127.0.0.1", serve.port), BOUND_S) as sock:
        sock.sendall(b"GET /sleep?s=1.2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert status_of(data) == 200 and data.endswith(b"slept")


def test_an_app_failing_inside_its_own_500_is_cut_not_answered_twice(
    start_serve: StartServe,
) -> None:
    # The server's own 500 is only for a failure before the head went out; this app's 500
    # head and part of its body are out, so the connection must close there, without a
    # second response written into the middle of the first one's chunked body.
    serve = start_serve("overload_apps:app")
    response = get(serve, "/fail-mid-500")
    assert status_of(response) == 500
    assert b"partial" in response
    assert response.count(b"HTTP/1.1 ") == 1
