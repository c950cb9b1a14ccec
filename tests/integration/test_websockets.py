"""WebSockets end to end: a real `serve` serving Starlette, FastAPI and raw ASGI endpoints,
exercised with the `websockets` client (and a raw socket where a well-behaved client cannot
show the behaviour).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Event, Ping

from tests.conftest import ServeProcess, StartServe, wait_until, write_config

pytestmark = pytest.mark.system


def serve_ws(start_serve: StartServe, tmp_path: Path, app: str, **keys: Any) -> ServeProcess:
    config = write_config(tmp_path / "serve.yaml", app=app, bind="127.0.0.1:0", **keys)
    return start_serve(config=config)


def open_ws(server: ServeProcess, path: str, **options: Any) -> ClientConnection:
    options.setdefault("open_timeout", 10)
    ws: ClientConnection = connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, **options)
    return ws


def test_starlette_echo_text_and_bytes_compressed(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    with open_ws(server, "/echo") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=10) == b"\x00\x01\xff"
    server.wait_log("app: ws disconnect 1000")
    assert server.stop() == 0


def test_deflate_off_is_not_negotiated(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app", ws_per_message_deflate=False)
    with open_ws(server, "/echo") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=10) == "plain"


def test_large_and_fragmented_messages(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    large = os.urandom(8 * 1024 * 1024)
    with open_ws(server, "/echo", max_size=None) as ws:
        ws.send(large)
        assert ws.recv(timeout=30) == large
        ws.send(["frag", "men", "ted"])  # one message in three frames
        assert ws.recv(timeout=10) == "fragmented"


def test_message_over_max_size_closes_with_1009(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app", ws_max_size=1024 * 1024)
    with open_ws(server, "/echo", max_size=None) as ws:
        ws.send(b"x" * (1024 * 1024))
        assert len(ws.recv(timeout=10)) == 1024 * 1024
        ws.send(b"x" * (1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    server.wait_log("app: ws disconnect 1009")


def test_close_codes_both_ways(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    with open_ws(server, "/close") as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")
    with open_ws(server, "/echo") as ws:
        ws.close(code=4002, reason="client done")
    server.wait_log("app: ws disconnect 4002")
    with open_ws(server, "/fail") as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
    server.wait_log("exception in the ASGI app")


def test_denial_before_accept_is_403(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    with pytest.raises(InvalidStatus) as info, open_ws(server, "/deny"):
        pass
    assert info.value.response.status_code == 403


def test_denial_response_extension(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    with pytest.raises(InvalidStatus) as info, open_ws(server, "/deny-http"):
        pass
    assert info.value.response.status_code == 401
    assert info.value.response.body == b"members only"


def test_fastapi_subprotocol_path_and_query(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:fastapi_app")
    with open_ws(server, "/rooms/blue?name=ann", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("hi")
        assert ws.recv(timeout=10) == "blue/ann: hi"
    server.wait_log("app: room disconnect 1000")
    with open_ws(server, "/rooms/red", subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
        ws.send("hey")
        assert ws.recv(timeout=10) == "red/anon: hey"


def test_raw_asgi_scope(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:scope_app")
    with open_ws(server, "/a%20b?q=1", subprotocols=["x", "y"]) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/a b"
    assert scope["raw_path"] == "/a%20b"
    assert scope["query_string"] == "q=1"
    assert scope["subprotocols"] == ["x", "y"]
    assert scope["extensions"] == ["websocket.http.response"]
    assert scope["headers"]["upgrade"] == "websocket"
    server.wait_log("app: scope app websocket.disconnect 1000")


def raw_handshake(port: int, path: str) -> tuple[socket.socket, bytes]:
    """Open a WebSocket by hand; return the socket and the bytes read after the 101 head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % (path.encode(), key)
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed during the handshake"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock, rest


def test_unanswered_pings_close_the_socket(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(
        start_serve,
        tmp_path,
        "ws_apps:starlette_app",
        ws_ping_interval=1.0,
        ws_ping_timeout=1.0,
    )
    sock, data = raw_handshake(server.port, "/echo")
    frames = Connection(ConnectionType.CLIENT)
    events: list[Event] = []
    with sock:
        # This client reads but never answers a ping, until the server hangs up.
        while True:
            frames.receive_data(data)
            events.extend(frames.events())
            data = sock.recv(65536)
            if not data:
                break
    assert any(isinstance(event, Ping) for event in events)
    closes = [event for event in events if isinstance(event, CloseConnection)]
    assert [close.code for close in closes] == [1011]
    server.wait_log("app: ws disconnect 1011")


def test_ws_none_serves_the_upgrade_as_plain_http(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app", ws="none")
    with pytest.raises(InvalidStatus) as info, open_ws(server, "/echo"):
        pass
    # Starlette has no HTTP route at /echo: the request reached the app as plain HTTP.
    assert info.value.response.status_code == 404


def test_sigterm_closes_open_sockets_with_1001(start_serve: StartServe, tmp_path: Path) -> None:
    server = serve_ws(start_serve, tmp_path, "ws_apps:starlette_app")
    codes: list[int] = []

    def hold(ws: ClientConnection) -> None:
        try:
            ws.recv(timeout=30)
        except ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd is not None else 0)

    with open_ws(server, "/echo") as first, open_ws(server, "/echo") as second:
        for ws in (first, second):
            ws.send("ready?")
            assert ws.recv(timeout=10) == "ready?"
        threads = [threading.Thread(target=hold, args=(ws,)) for ws in (first, second)]
        for thread in threads:
            thread.start()
        server.signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
    assert codes == [1001, 1001]
    assert server.wait_exit(30) == 0
    assert server.log().count("app: ws disconnect 1001") == 2


def test_a_send_blocked_on_a_client_that_stopped_reading_raises_once_it_is_dropped(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # The client reads nothing, so it never answers a ping either: the ping timeout drops
    # it, and the app's send() that waits for the client to read must raise an OSError
    # (ASGI spec 2.4) instead of waiting on for a socket that is gone. The close frame
    # never gets out either: the socket is aborted after send_timeout.
    server = serve_ws(
        start_serve,
        tmp_path,
        "ws_apps:ticker",
        ws_ping_interval=1.0,
        ws_ping_timeout=1.0,
        send_timeout=1,
    )
    [worker] = server.worker_pids()
    fds = Path(f"/proc/{worker}/fd")
    idle_fds = len(list(fds.iterdir()))
    sock, _ = raw_handshake(server.port, "/")
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        server.wait_log("app: ticker accepted")
        log = server.wait_log(r"app: ticker send raised ClientDisconnected after \d+", timeout=15)
        wait_until(lambda: len(list(fds.iterdir())) == idle_fds, timeout=10)
    assert "exception in the ASGI app" not in log


def test_send_timeout_drops_an_open_websocket_whose_client_stopped_reading(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # No keepalive ping here: send_timeout alone must drop the client that reads nothing,
    # as it drops an HTTP client that stopped reading, so the app's waiting send raises.
    server = serve_ws(
        start_serve, tmp_path, "ws_apps:ticker", ws_ping_interval=None, send_timeout=1
    )
    sock, _ = raw_handshake(server.port, "/")
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        server.wait_log("app: ticker accepted")
        log = server.wait_log(r"app: ticker send raised ClientDisconnected after \d+", timeout=20)
    assert "exception in the ASGI app" not in log
    assert server.stop() == 0
