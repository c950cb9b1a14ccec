"""One way to run an app for HTTP and WebSocket (server.app_run): the same errors from send()
and the same log lines on both protocols, and what each side does once its app ends.

The HTTP side is a Cycle with a recording owner (tests/unit/server/test_cycle.py's); the
WebSocket side is a real loopback connection with a wsproto client (test_ws_harness).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from wsproto.events import CloseConnection

from serve.server.app_run import run_app
from serve.server.cycle import Cycle
from serve.server.errors import ClientDisconnected
from serve.server.types import Message, Receive, Scope, Send
from tests.unit.server.test_cycle import RecordingOwner
from tests.unit.server.test_ws_harness import Client, eventually, run, serving

START: Message = {"type": "http.response.start", "status": 200, "headers": []}


def http_cycle() -> tuple[Cycle, RecordingOwner]:
    owner = RecordingOwner()
    scope = {"type": "http", "method": "GET", "path": "/"}
    return Cycle(owner, owner, scope, False, False, True), owner


def http_send_error_after_disconnect() -> BaseException:
    """What send() raises on a cycle whose client left while the response was under way."""

    async def scenario() -> BaseException:
        cycle, _ = http_cycle()
        await cycle.send(START)
        cycle.disconnect()
        with pytest.raises(Exception) as info:
            await cycle.send({"type": "http.response.body", "body": b"late"})
        return info.value

    return asyncio.run(scenario())


def websocket_send_errors(close_first: bool) -> list[BaseException]:
    """What send() raises on a WebSocket the client closed (or the app closed first)."""
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if close_first:
            await send({"type": "websocket.close", "code": 1000})
        else:
            assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "late"})
        except Exception as exc:
            errors.append(exc)

    async def main() -> None:
        async with serving(app) as (_, port):
            client = await Client.open(port)
            await client.accepted()
            if close_first:
                await client.closed()
            else:
                client.send(CloseConnection(code=1000))
            await eventually(lambda: errors)
            await client.close()

    run(main, "uvloop")
    return errors


def test_send_after_the_connection_closed_reads_the_same_on_both() -> None:
    http = http_send_error_after_disconnect()
    ws = websocket_send_errors(close_first=False)[0]
    assert isinstance(http, ClientDisconnected)
    assert isinstance(ws, ClientDisconnected)
    assert str(http) == "'http.response.body' sent after the connection closed"
    assert str(ws) == "'websocket.send' sent after the connection closed"


def test_a_websocket_send_after_the_apps_own_close_is_a_disconnect_not_misuse() -> None:
    # Our close frame is out while the client's is awaited: nothing more can go, and the
    # spec's answer to a send on a closed connection is an OSError, as once CLOSED.
    (error,) = websocket_send_errors(close_first=True)
    assert isinstance(error, ClientDisconnected)
    assert str(error) == "'websocket.send' sent after the connection closed"


def test_misuse_reads_the_same_on_both() -> None:
    async def http() -> str:
        cycle, _ = http_cycle()
        with pytest.raises(RuntimeError) as info:
            await cycle.send({"type": "http.response.body"})
        return str(info.value)

    ws_errors: list[BaseException] = []

    async def ws_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        try:
            await send({"type": "websocket.send", "text": "before accept"})
        except RuntimeError as exc:
            ws_errors.append(exc)
            raise

    async def main() -> None:
        async with serving(ws_app) as (_, port):
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 500
            await client.close()

    assert asyncio.run(http()) == (
        "unexpected ASGI message 'http.response.body': expected 'http.response.start'"
    )
    run(main, "uvloop")
    assert str(ws_errors[0]).startswith(
        "unexpected ASGI message 'websocket.send': expected 'websocket.accept'"
    )


@pytest.mark.parametrize(
    ("scope_type", "what"),
    [("http", "the response"), ("websocket", "the WebSocket handshake")],
)
def test_an_app_returning_unfinished_is_logged_once_in_one_wording(
    caplog: pytest.LogCaptureFixture, scope_type: str, what: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    async def main() -> None:
        if scope_type == "http":
            cycle, owner = http_cycle()
            await run_app(app, cycle, owner)
            assert owner.calls[-2:] == [("failed", 500), ("finished",)]
            return
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 500
            await eventually(lambda: not ctx.tasks)
            await client.close()

    with caplog.at_level(logging.ERROR, logger="serve"):
        run(main, "uvloop")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"ASGI app returned without completing {what}"]


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_an_app_failure_is_logged_once_with_its_scope_type(
    caplog: pytest.LogCaptureFixture, scope_type: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    async def main() -> None:
        if scope_type == "http":
            cycle, owner = http_cycle()
            await run_app(app, cycle, owner)
            return
        async with serving(app) as (ctx, port):
            client = await Client.open(port)
            assert (await client.rejected())[0] == 500
            await eventually(lambda: not ctx.tasks)
            await client.close()

    with caplog.at_level(logging.ERROR, logger="serve"):
        run(main, "uvloop")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [f"exception in the ASGI app ({scope_type})"]
    assert errors[0].exc_info is not None
