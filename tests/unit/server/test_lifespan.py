"""Lifespan against small real ASGI apps (and a real Starlette app) on a real event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Literal

import pytest
from starlette.applications import Starlette

from serve.server.errors import LifespanFailed
from serve.server.lifespan import Lifespan
from serve.server.types import Message, Receive, Scope, Send

Mode = Literal["auto", "on", "off"]


class Records(logging.Handler):
    """Collects what the Lifespan under test logged, on a logger of its own."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(f"test.lifespan.{uuid.uuid4().hex}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]

    def tracebacks(self) -> list[BaseException]:
        return [r.exc_info[1] for r in self.records if r.exc_info and r.exc_info[1]]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    handler.logger.addHandler(handler)
    yield handler
    handler.logger.removeHandler(handler)


LifespanFor = Callable[[Any, Mode], Lifespan]


@pytest.fixture
def lifespan_for(records: Records) -> LifespanFor:
    def build(app: Any, mode: Mode) -> Lifespan:
        return Lifespan(app, mode, records.logger)

    return build


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


class GoodApp:
    """A hand-written lifespan app that records what happened to it."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["pool"] = "connected"
                self.events.append("startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return


def test_startup_and_shutdown_complete_with_state(
    lifespan_for: LifespanFor, records: Records
) -> None:
    app = GoodApp()
    lifespan = lifespan_for(app, "on")

    async def body() -> None:
        await lifespan.startup()
        assert app.events == ["startup"]
        await lifespan.shutdown()

    run(body)
    assert app.events == ["startup", "shutdown"]
    assert lifespan.state == {"pool": "connected"}
    assert app.scope["type"] == "lifespan"
    assert app.scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert app.scope["state"] is lifespan.state
    assert records.at(logging.INFO) == [
        "Application startup complete",
        "Application shutdown complete",
    ]
    assert records.at(logging.ERROR) == []


def test_off_never_calls_the_app(lifespan_for: LifespanFor) -> None:
    app = GoodApp()
    lifespan = lifespan_for(app, "off")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    assert app.events == []


async def failing_startup(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_message(lifespan_for: LifespanFor, records: Records, mode: Mode) -> None:
    lifespan = lifespan_for(failing_startup, mode)
    with pytest.raises(LifespanFailed) as info:
        run(lifespan.startup)
    assert str(info.value) == "database unreachable"
    assert records.at(logging.ERROR) == []  # one line: the caller logs it


def test_startup_failed_without_message(lifespan_for: LifespanFor) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed"})

    with pytest.raises(LifespanFailed, match=r"^the app sent lifespan\.startup\.failed without"):
        run(lifespan_for(app, "on").startup)


def test_startup_failed_with_traceback_message_then_raise(
    lifespan_for: LifespanFor, records: Records
) -> None:
    """Starlette's way: the message is a whole traceback, and the app re-raises."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        text = "Traceback (most recent call last):\n  File 'x.py'\nKeyError: 'SECRET'\n"
        await send({"type": "lifespan.startup.failed", "message": text})
        raise KeyError("SECRET")

    lifespan = lifespan_for(app, "auto")
    with pytest.raises(LifespanFailed, match=r"^KeyError: 'SECRET'$"):
        run(lifespan.startup)
    assert "Traceback (most recent call last)" in records.at(logging.ERROR)[0]
    assert [type(e) for e in records.tracebacks()] == [KeyError]
    assert all(r.levelno == logging.DEBUG for r in records.records if r.exc_info)


async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"


def test_auto_mode_tolerates_an_app_without_lifespan(
    lifespan_for: LifespanFor, records: Records
) -> None:
    lifespan = lifespan_for(http_only, "auto")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    [message] = records.at(logging.INFO)
    assert message.startswith("ASGI lifespan not supported by the app (AssertionError")
    assert records.at(logging.ERROR) == []


def test_auto_mode_tolerates_an_app_that_returns_at_once(
    lifespan_for: LifespanFor, records: Records
) -> None:
    async def ignores(scope: Scope, receive: Receive, send: Send) -> None:
        return

    run(lifespan_for(ignores, "auto").startup)
    assert records.at(logging.INFO) == [
        "ASGI lifespan not supported by the app; continuing without it"
    ]


def test_on_mode_fails_an_app_without_lifespan(lifespan_for: LifespanFor, records: Records) -> None:
    lifespan = lifespan_for(http_only, "on")
    with pytest.raises(LifespanFailed, match=r"^AssertionError"):
        run(lifespan.startup)
    assert records.at(logging.ERROR) == ["ASGI lifespan startup raised an exception"]
    assert [type(e) for e in records.tracebacks()] == [AssertionError]


def test_on_mode_fails_an_app_that_returns_at_once(lifespan_for: LifespanFor) -> None:
    async def ignores(scope: Scope, receive: Receive, send: Send) -> None:
        return

    with pytest.raises(
        LifespanFailed, match=r"returned without sending lifespan\.startup\.complete"
    ):
        run(lifespan_for(ignores, "on").startup)


def test_auto_mode_fails_an_app_that_raises_after_receiving_startup(
    lifespan_for: LifespanFor, records: Records
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise ConnectionRefusedError("redis:6379\nrefused")

    with pytest.raises(LifespanFailed) as info:
        run(lifespan_for(app, "auto").startup)
    assert str(info.value) == "ConnectionRefusedError: redis:6379 | refused"
    assert [type(e) for e in records.tracebacks()] == [ConnectionRefusedError]


def test_app_raising_during_shutdown_is_logged_not_raised(
    lifespan_for: LifespanFor, records: Records
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise OSError("flush failed")

    lifespan = lifespan_for(app, "on")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    assert records.at(logging.ERROR) == ["ASGI lifespan shutdown raised an exception"]
    assert [str(e) for e in records.tracebacks()] == ["flush failed"]


def test_shutdown_failed_message_is_logged(lifespan_for: LifespanFor, records: Records) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "pool did not close"})

    lifespan = lifespan_for(app, "auto")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    assert records.at(logging.ERROR) == ["ASGI lifespan shutdown failed: pool did not close"]


def test_app_ending_after_startup_is_logged_and_shutdown_skipped(
    lifespan_for: LifespanFor, records: Records
) -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(await receive())
        await send({"type": "lifespan.startup.complete"})
        raise RuntimeError("background loop died")

    lifespan = lifespan_for(app, "on")

    async def body() -> None:
        await lifespan.startup()
        await asyncio.sleep(0)  # let the app task finish
        await lifespan.shutdown()

    run(body)
    assert received == [{"type": "lifespan.startup"}]
    [error] = records.at(logging.ERROR)
    assert error.startswith("ASGI lifespan task failed after startup")
    assert "Application shutdown complete" not in records.at(logging.INFO)


def test_unexpected_message_raises_inside_the_app(
    lifespan_for: LifespanFor, records: Records
) -> None:
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await send({"type": "lifespan.startup.complete"})
        except RuntimeError as exc:
            seen.append(exc)
            raise

    lifespan = lifespan_for(app, "on")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    assert [str(e) for e in seen] == [
        "unexpected ASGI lifespan message 'lifespan.startup.complete' while shutting down"
    ]
    assert records.at(logging.ERROR) == ["ASGI lifespan shutdown raised an exception"]


def test_cancelled_shutdown_cancels_the_app(lifespan_for: LifespanFor) -> None:
    """The worker's deadline cancels shutdown(); the app task must not outlive it."""
    state: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        state["shutdown_received"].set()
        try:
            await asyncio.Event().wait()  # a shutdown handler that hangs
        finally:
            state["app_finished"] = True

    lifespan = lifespan_for(app, "on")

    async def body() -> None:
        state["shutdown_received"] = asyncio.Event()
        await lifespan.startup()
        shutdown = asyncio.ensure_future(lifespan.shutdown())
        await state["shutdown_received"].wait()
        shutdown.cancel()
        with pytest.raises(asyncio.CancelledError):
            await shutdown
        await asyncio.sleep(0)

    run(body)
    assert state["app_finished"] is True


def test_startup_twice_is_a_programming_error(lifespan_for: LifespanFor) -> None:
    lifespan = lifespan_for(GoodApp(), "off")

    async def body() -> None:
        await lifespan.startup()
        with pytest.raises(RuntimeError, match="only once"):
            await lifespan.startup()

    run(body)


def test_starlette_lifespan_state_reaches_the_state_dict(
    lifespan_for: LifespanFor, records: Records
) -> None:
    closed: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan_context(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"db": "pool"}
        closed.append(True)

    lifespan = lifespan_for(Starlette(lifespan=lifespan_context), "auto")

    async def body() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run(body)
    assert lifespan.state == {"db": "pool"}
    assert closed == [True]
    assert records.at(logging.ERROR) == []


def test_starlette_startup_exception_fails_with_its_last_line(
    lifespan_for: LifespanFor, records: Records
) -> None:
    @contextlib.asynccontextmanager
    async def lifespan_context(app: Starlette) -> AsyncIterator[None]:
        raise ValueError("bad DSN")
        yield

    lifespan = lifespan_for(Starlette(lifespan=lifespan_context), "auto")
    with pytest.raises(LifespanFailed, match=r"^ValueError: bad DSN$"):
        run(lifespan.startup)
    assert "bad DSN" in records.at(logging.ERROR)[0]
