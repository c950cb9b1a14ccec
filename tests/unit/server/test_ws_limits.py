"""WebSocket limits and endings over real loopback sockets: denial, bad handshakes, message
size, keepalive pings, graceful drain. Every test runs on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import base64
import tracemalloc

import pytest
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate

from serve.server import ws_connection
from serve.server.types import ASGIApp, Message, Receive, Scope, Send
from serve.server.ws_settings import WSSettings
from tests.unit.server.test_ws_harness import Client, eventually, run, serving


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def echo_until_disconnect(log: list[Message]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or "?"})

    return app


def test_close_before_accept_answers_403(loop_kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 403
            await eventually(lambda: not ctx.connections and not ctx.tasks)
            await client.close()

    run(main, loop_kind)


@pytest.mark.parametrize("streamed", [False, True])
def test_app_denial_response_extension(loop_kind: str, streamed: bool) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        if streamed:
            await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            status, headers, body = await client.rejected()
            assert status == 401
            assert (b"www-authenticate", b"Bearer") in headers
            assert body == (b"who are you?" if streamed else b"are you?")
            await client.close()

    run(main, loop_kind)


@pytest.mark.parametrize("raises", [False, True])
def test_app_ending_before_accept_answers_500(loop_kind: str, raises: bool) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if raises:
            raise RuntimeError("boom")

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 500
            await client.close()

    run(main, loop_kind)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b"sec-websocket-version: 8\r\nsec-websocket-key: %s\r\n", 426),
        (b"sec-websocket-version: 13\r\nsec-websocket-key: short\r\n", 400),
        (b"sec-websocket-version: 13\r\n", 400),
    ],
    ids=["old-version", "bad-key", "no-key"],
)
def test_invalid_handshake_is_answered_as_plain_http(
    loop_kind: str, fields: bytes, status: int
) -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    key = base64.b64encode(b"k" * 16)
    request = (
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        + (fields.replace(b"%s", key))
        + b"\r\n"
    )

    async def main() -> None:
        async with serving(app) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            response = await reader.read()  # the server closes after answering
            assert response.startswith(b"HTTP/1.1 %d " % status)
            if status == 426:
                assert b"sec-websocket-version: 13\r\n" in response
            writer.close()

    run(main, loop_kind)
    assert not called


def test_upgrade_while_draining_answers_503(loop_kind: str) -> None:
    log: list[Message] = []

    async def main() -> None:
        async with serving(echo_until_disconnect(log)) as (ctx, port):
            ctx.draining = True
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 503
            await client.close()

    run(main, loop_kind)
    assert not log


def test_message_over_max_size_closes_with_1009(loop_kind: str) -> None:
    log: list[Message] = []

    async def main() -> None:
        async with serving(echo_until_disconnect(log), WSSettings(max_size=1000)) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            client.send(TextMessage(data="a" * 1000))
            assert (await client.event()) == TextMessage(data="a" * 1000)
            # Fragments count together: the limit is on the message, not the frame.
            client.send(BytesMessage(data=b"b" * 600, message_finished=False))
            client.send(BytesMessage(data=b"b" * 600, message_finished=True))
            assert (await client.closed()).code == 1009
            await eventually(lambda: log and log[-1]["type"] == "websocket.disconnect")
            await client.close()

    run(main, loop_kind)
    assert log[-1]["code"] == 1009
    assert len(log) == 2


def test_deflate_bomb_is_stopped_in_bounded_memory(loop_kind: str) -> None:
    log: list[Message] = []
    settings = WSSettings(max_size=1024 * 1024)

    async def main() -> None:
        async with serving(echo_until_disconnect(log), settings) as (_, port):
            client = await Client.open(port, extensions=[PerMessageDeflate()])
            assert (await client.accepted()).extensions
            # One frame of 64 MiB of zeros: about 64 KiB on the wire.
            bomb = client.ws.send(BytesMessage(data=bytes(64 * 1024 * 1024)))
            assert len(bomb) < 128 * 1024
            tracemalloc.start()
            try:
                client.writer.write(bomb)
                assert (await client.closed()).code == 1009
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 32 * 1024 * 1024
            await client.close()

    run(main, loop_kind)
    assert log[-1]["code"] == 1009


def test_unanswered_pings_close_with_1011(loop_kind: str) -> None:
    log: list[Message] = []
    settings = WSSettings(ping_interval_s=0.05, ping_timeout_s=0.1)

    async def main() -> None:
        async with serving(echo_until_disconnect(log), settings) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            # This client never answers a ping.
            assert isinstance(await client.event(), Ping)
            assert (await client.closed()).code == 1011
            await eventually(lambda: log)
            await client.close()

    run(main, loop_kind)
    assert log == [
        {"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"}
    ]


def test_answered_pings_keep_the_connection_open(loop_kind: str) -> None:
    log: list[Message] = []
    settings = WSSettings(ping_interval_s=0.02, ping_timeout_s=0.5)

    async def main() -> None:
        async with serving(echo_until_disconnect(log), settings) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            for _ in range(40):  # forty pings take longer than one timeout
                ping = await client.event()
                assert isinstance(ping, Ping)
                client.send(ping.response())
            client.send(TextMessage(data="still here"))
            while not isinstance(event := await client.event(), TextMessage):
                assert isinstance(event, Ping)
                client.send(event.response())
            assert event.data == "still here"
            await client.close()

    run(main, loop_kind)


def test_client_ping_is_answered(loop_kind: str) -> None:
    async def main() -> None:
        async with serving(echo_until_disconnect([])) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            client.send(Ping(payload=b"are you there"))
            pong = await client.event()
            assert pong == Ping(payload=b"are you there").response()
            await client.close()

    run(main, loop_kind)


def test_drain_closes_open_sockets_with_1001(loop_kind: str) -> None:
    logs: list[list[Message]] = [[], []]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await echo_until_disconnect(logs[scope["path"] == "/b"])(scope, receive, send)

    async def main() -> None:
        async with serving(app) as (ctx, port):
            clients = [await Client.open(port, "/a"), await Client.open(port, "/b")]
            for client in clients:
                await client.accepted()
            ctx.draining = True  # what the worker sets when a drain starts
            for client in clients:
                closing = await client.closed()
                assert closing.code == 1001
                client.send(closing.response())
            await eventually(lambda: not ctx.connections and not ctx.tasks)
            for client in clients:
                await client.close()

    run(main, loop_kind)
    assert [log[-1]["code"] for log in logs] == [1001, 1001]


def test_close_frame_unanswered_closes_the_socket_after_the_timeout(
    loop_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_connection, "CLOSE_TIMEOUT_S", 0.05)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            assert isinstance(await client.event(), CloseConnection)
            # The client never answers; the sweep gives up once the close deadline passes.
            await eventually(lambda: not ctx.connections)
            await client.close()

    run(main, loop_kind)
