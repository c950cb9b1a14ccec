"""The ASGI websocket flow over real loopback sockets: scope, accept, echo, close, denial.

Every test runs on asyncio's loop and on uvloop (what workers run); the client is wsproto.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.extensions import PerMessageDeflate

from serve.server.errors import ClientDisconnected
from serve.server.types import Message, Receive, Scope, Send
from serve.server.ws_connection import WebSocketConnection
from serve.server.ws_settings import WSSettings
from tests.unit.server.test_ws_harness import Client, eventually, run, serving


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recorder:
    """An app that accepts (with options), echoes, and records what it received."""

    def __init__(self, **accept: Any) -> None:
        self.accept = accept
        self.scope: Scope = {}
        self.received: list[Message] = []
        self.send_errors: list[BaseException] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.received.append(await receive())
        await send({"type": "websocket.accept", **self.accept})
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                break
            reply = {k: message[k] for k in ("text", "bytes") if message.get(k) is not None}
            await send({"type": "websocket.send", **reply})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            self.send_errors.append(exc)


def test_echo_text_and_bytes_and_scope(loop_kind: str) -> None:
    app = Recorder()

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port, "/chat/r%C3%A9?x=1", subprotocols=["a", "b"])
            await client.accepted()
            client.send(TextMessage(data="héllo"))
            client.send(BytesMessage(data=b"\x00\xff"))
            assert (await client.event()) == TextMessage(data="héllo")
            assert (await client.event()) == BytesMessage(data=b"\x00\xff")
            client.send(CloseConnection(code=1000))
            assert (await client.closed()).code == 1000
            await eventually(lambda: app.send_errors)
            await client.close()

    run(main, loop_kind)
    scope = app.scope
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/chat/ré"
    assert scope["raw_path"] == b"/chat/r%C3%A9"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"][0] == "127.0.0.1"
    assert scope["state"] == {"shared": 1}
    assert "websocket.http.response" in scope["extensions"]
    assert (b"upgrade", b"websocket") in scope["headers"]
    assert [m["type"] for m in app.received] == [
        "websocket.connect",
        "websocket.receive",
        "websocket.receive",
        "websocket.disconnect",
    ]
    assert app.received[1]["text"] == "héllo"
    assert app.received[2]["bytes"] == b"\x00\xff"
    assert app.received[3]["code"] == 1000
    # ASGI spec 2.4: send() after the close raises; frameworks catch it as an OSError.
    assert isinstance(app.send_errors[0], ClientDisconnected)


def test_accept_with_subprotocol_and_headers(loop_kind: str) -> None:
    app = Recorder(subprotocol="b", headers=[(b"x-room", b"lobby")])

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port, subprotocols=["a", "b"])
            accepted = await client.accepted()
            assert accepted.subprotocol == "b"
            assert (b"x-room", b"lobby") in accepted.extra_headers
            await client.close()

    run(main, loop_kind)


def test_fragmented_message_reaches_the_app_whole(loop_kind: str) -> None:
    app = Recorder()

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            client.send(TextMessage(data="frag", message_finished=False))
            client.send(TextMessage(data="men", message_finished=False))
            client.send(TextMessage(data="ted", message_finished=True))
            assert (await client.event()) == TextMessage(data="fragmented")
            await client.close()

    run(main, loop_kind)
    assert [m.get("text") for m in app.received[1:2]] == ["fragmented"]


@pytest.mark.parametrize("enabled", [True, False])
def test_permessage_deflate_negotiated_when_offered(loop_kind: str, enabled: bool) -> None:
    app = Recorder()
    big = "compress me " * 5000

    async def main() -> None:
        settings = WSSettings(per_message_deflate=enabled)
        async with serving(app, settings) as (_, port):
            client = await Client.open(port, extensions=[PerMessageDeflate()])
            accepted = await client.accepted()
            assert bool(accepted.extensions) is enabled
            client.send(TextMessage(data=big))
            assert (await client.event()) == TextMessage(data=big)
            await client.close()

    run(main, loop_kind)
    assert app.received[1]["text"] == big


def test_client_close_code_and_reason_reach_the_app(loop_kind: str) -> None:
    app = Recorder()

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            client.send(CloseConnection(code=4000, reason="done here"))
            echoed = await client.closed()
            assert (echoed.code, echoed.reason) == (4000, "done here")
            # The server closes the TCP connection after the closing handshake.
            await eventually(lambda: not ctx.connections)
            await client.close()

    run(main, loop_kind)
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "done here"}


def test_app_close_code_and_reason_reach_the_client(loop_kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        assert (await receive())["type"] == "websocket.disconnect"

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            closing = await client.closed()
            assert (closing.code, closing.reason) == (4001, "bye")
            client.send(closing.response())
            await eventually(lambda: not ctx.connections and not ctx.tasks)
            await client.close()

    run(main, loop_kind)


def test_client_that_vanishes_gives_disconnect_1006(loop_kind: str) -> None:
    app = Recorder()

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            await client.close()
            await eventually(lambda: app.send_errors)

    run(main, loop_kind)
    assert app.received[-1]["type"] == "websocket.disconnect"
    assert app.received[-1]["code"] == 1006


@pytest.mark.parametrize(
    ("returns", "expected"), [(True, 1000), (False, 1011)], ids=["returns", "raises"]
)
def test_app_ending_after_accept_closes_the_socket(
    loop_kind: str, returns: bool, expected: int
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if not returns:
            raise ValueError("boom")

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            assert (await client.closed()).code == expected
            await client.close()

    run(main, loop_kind)


def test_early_frames_sent_with_the_handshake_are_delivered_after_accept(loop_kind: str) -> None:
    app = Recorder()
    early = Connection(ConnectionType.CLIENT).send(TextMessage(data="too eager"))

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port, extra=early)
            await client.accepted()
            assert (await client.event()) == TextMessage(data="too eager")
            await client.close()

    run(main, loop_kind)


def test_send_waits_while_the_client_does_not_read(loop_kind: str) -> None:
    chunk, count = b"x" * 65536, 400
    sent: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(count):
            await send({"type": "websocket.send", "bytes": chunk})
            sent.append(i)

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            # The client reads nothing more: the server's write buffer fills and send() waits.
            (conn,) = ctx.connections
            assert isinstance(conn, WebSocketConnection)
            await eventually(lambda: conn.flow.write_paused)
            assert len(sent) < count
            received = 0
            while received < count:
                event = await client.event()
                assert isinstance(event, BytesMessage)
                received += event.message_finished
            await client.close()

    run(main, loop_kind)
    assert len(sent) == count


def test_messages_the_app_does_not_take_pause_reading(loop_kind: str) -> None:
    release = asyncio.Event()
    got: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(got) < 100:
            got.append((await receive())["text"])

    async def main() -> None:
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            (conn,) = ctx.connections
            assert isinstance(conn, WebSocketConnection)
            for i in range(100):
                client.send(TextMessage(data=str(i)))
            await eventually(lambda: not conn.transport.is_reading())
            release.set()
            await eventually(lambda: len(got) == 100)
            assert conn.transport.is_reading()
            await client.close()

    run(main, loop_kind)
    assert got == [str(i) for i in range(100)]
