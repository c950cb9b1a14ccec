"""Settings that change what a worker does: proxy trust, root path, concurrency, logs."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import StartServe, raw_request, status_of

pytestmark = pytest.mark.system

FORWARDED = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Proto": "https"}


def test_proxy_headers_trusted_from_allowed_peer(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    scope = httpx.get(server.url + "/scope", headers=FORWARDED).json()
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_proxy_headers_ignored_from_untrusted_peer(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--forwarded-allow-ips", "192.0.2.1")
    scope = httpx.get(server.url + "/scope", headers=FORWARDED).json()
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_root_path_prefixes_path(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--root-path", "/api")
    scope = httpx.get(server.url + "/scope").json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"


def test_limit_concurrency_answers_503_and_recovers(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--limit-concurrency", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
        held.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        over = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status_of(over) == 503
    assert httpx.get(server.url + "/").status_code == 200


def test_json_logs_are_one_object_per_line(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--log-format", "json")
    assert httpx.get(server.url + "/?x=1").status_code == 200
    server.wait_log('"status": 200|"status":200')
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "serve.access"]
    assert access and access[0]["status"] == 200
    assert all({"ts", "level", "pid", "msg"} <= set(r) for r in records)


def test_access_log_off_logs_no_requests(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--no-access-log")
    assert httpx.get(server.url + "/marker-path").status_code == 200
    assert server.stop() == 0
    assert "marker-path" not in server.log()


def test_server_header_can_be_changed(start_serve: StartServe) -> None:
    server = start_serve("asgi_apps:app", "--server-header", "edge")
    assert httpx.get(server.url + "/").headers["server"] == "edge"
