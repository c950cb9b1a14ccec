"""The ASGI cycle's state machine, driven on a real event loop with a recording owner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from serve.server.app_run import run_app
from serve.server.cycle import Cycle, ResponseState
from serve.server.errors import ClientDisconnected


class NeverPaused:
    """The owner's flow control as the cycle reads it: writes are never paused here."""

    write_paused = False

    async def drain(self) -> None:
        return None


class RecordingOwner:
    """Stands in for the connection: records what the cycle asked it to write."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.flow = NeverPaused()

    def start_response(
        self,
        cycle: Cycle,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        more: bool,
    ) -> None:
        self.calls.append(("start", status, body, more))

    def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
        self.calls.append(("body", body, more))

    def send_continue(self) -> None:
        self.calls.append(("continue",))

    def body_consumed(self) -> None:
        self.calls.append(("consumed",))

    def response_complete(self, cycle: Cycle) -> None:
        self.calls.append(("complete",))

    def response_failed(self, cycle: Cycle) -> None:
        self.calls.append(("failed", cycle.status))

    def response_cut(self, cycle: Cycle) -> None:
        self.calls.append(("cut", cycle.status))

    def app_finished(self, cycle: Cycle) -> None:
        self.calls.append(("finished",))


def make(has_body: bool = False, expect_continue: bool = False) -> tuple[Cycle, RecordingOwner]:
    owner = RecordingOwner()
    scope = {"type": "http", "method": "GET", "path": "/"}
    cycle = Cycle(
        owner,
        owner,
        scope,
        has_body=has_body,
        expect_continue=expect_continue,
        keep_alive=True,
    )
    return cycle, owner


def run(coro: Any) -> Any:
    return asyncio.run(coro)


START = {"type": "http.response.start", "status": 200, "headers": []}


def test_request_without_body_reads_empty_then_disconnect_after_response() -> None:
    async def scenario() -> list[dict[str, Any]]:
        cycle, _ = make()
        first = await cycle.receive()
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b"ok"})
        return [dict(first), dict(await cycle.receive())]

    first, after = run(scenario())
    assert first == {"type": "http.request", "body": b"", "more_body": False}
    assert after == {"type": "http.disconnect"}


def test_body_chunks_are_joined_and_more_body_tracks_completion() -> None:
    async def scenario() -> list[dict[str, Any]]:
        cycle, owner = make(has_body=True)
        cycle.body.feed(b"ab")
        cycle.body.feed(b"cd")
        first = await cycle.receive()
        cycle.body.feed(b"ef")
        cycle.body.end()
        second = await cycle.receive()
        assert ("consumed",) in owner.calls
        return [dict(first), dict(second)]

    assert run(scenario()) == [
        {"type": "http.request", "body": b"abcd", "more_body": True},
        {"type": "http.request", "body": b"ef", "more_body": False},
    ]


def test_receive_waits_for_body_that_arrives_later() -> None:
    async def scenario() -> dict[str, Any]:
        cycle, _ = make(has_body=True)
        loop = asyncio.get_running_loop()
        loop.call_soon(cycle.body.feed, b"late")
        loop.call_soon(cycle.body.end)
        return dict(await cycle.receive())

    assert run(scenario()) == {"type": "http.request", "body": b"late", "more_body": False}


def test_expect_continue_sent_once_on_first_receive() -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        cycle, owner = make(has_body=True, expect_continue=True)
        cycle.body.feed(b"x")
        cycle.body.end()
        await cycle.receive()
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b""})
        return owner.calls

    calls = run(scenario())
    assert calls.count(("continue",)) == 1
    assert calls[0] == ("continue",)


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.body", "body": b"x"}],
        [START, START],
        [START, {"type": "http.response.body"}, {"type": "http.response.body"}],
        [{"type": "websocket.send"}],
    ],
    ids=["body-before-start", "start-twice", "body-after-done", "wrong-type"],
)
def test_asgi_misuse_raises(messages: list[dict[str, Any]]) -> None:
    async def scenario() -> None:
        cycle, _ = make()
        for message in messages:
            await cycle.send(message)

    with pytest.raises(RuntimeError):
        run(scenario())


def test_after_disconnect_receive_reports_it_and_send_raises_an_oserror() -> None:
    async def scenario() -> tuple[dict[str, Any], list[type[BaseException]], list[Any]]:
        cycle, owner = make(has_body=True)
        cycle.disconnect()
        message = await cycle.receive()
        raised = []
        for sent in (START, {"type": "http.response.body", "body": b"ignored"}):
            with pytest.raises(OSError) as info:
                await cycle.send(sent)
            raised.append(type(info.value))
        return dict(message), raised, owner.calls

    message, raised, calls = run(scenario())
    assert message == {"type": "http.disconnect"}
    # ASGI spec 2.4: a server-specific OSError subclass, nothing written.
    assert raised == [ClientDisconnected, ClientDisconnected]
    assert calls == []


@pytest.mark.parametrize(
    ("sent", "cut"),
    [
        ([], []),
        ([START], [("cut", 200)]),
        ([START, {"type": "http.response.body", "body": b"a", "more_body": True}], [("cut", 200)]),
        ([START, {"type": "http.response.body", "body": b"whole"}], []),
    ],
)
def test_a_response_is_cut_only_when_begun_and_not_ended(
    sent: list[dict[str, Any]], cut: list[tuple[str, int]]
) -> None:
    # Not begun (no line, as with uvicorn), or complete (accounted at its completion).
    async def scenario() -> list[Any]:
        cycle, owner = make()
        for message in sent:
            await cycle.send(message)
        owner.calls.clear()
        cycle.disconnect()
        await asyncio.sleep(0)
        return owner.calls

    assert run(scenario()) == cut


def test_a_cut_response_is_accounted_once_on_the_next_loop_turn() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        cycle, owner = make()
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b"a", "more_body": True})
        owner.calls.clear()
        # HTTP/2 loses a stream both when it shuts and when the connection is lost.
        cycle.disconnect()
        cycle.disconnect()
        now = list(owner.calls)
        await asyncio.sleep(0)
        return now, owner.calls

    assert run(scenario()) == ([], [("cut", 200)])


def test_a_stream_lost_inside_the_send_that_completes_it_is_not_cut() -> None:
    # An HTTP/2 upload the app answered without reading it: writing the last body message
    # ends the stream, which resets it and loses it, before send() marks the response done.
    class LosingOwner(RecordingOwner):
        def send_body(self, cycle: Cycle, body: bytes, more: bool) -> None:
            super().send_body(cycle, body, more)
            if not more:
                cycle.disconnect()

    async def scenario() -> list[Any]:
        owner = LosingOwner()
        cycle = Cycle(owner, owner, {"type": "http", "method": "POST"}, True, False, True)
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b"a", "more_body": True})
        await cycle.send({"type": "http.response.body", "body": b"b"})
        await asyncio.sleep(0)
        return [call for call in owner.calls if call[0] in ("complete", "cut")]

    assert run(scenario()) == [("complete",)]


def test_a_response_the_server_answered_in_the_apps_place_is_not_cut() -> None:
    async def scenario() -> list[Any]:
        cycle, owner = make()
        await cycle.send(START)
        owner.calls.clear()
        cycle.disconnect()
        # As HTTP/2 does for a body over max_body_size: a 413 written for the app.
        cycle.answer = 413
        await asyncio.sleep(0)
        return owner.calls

    assert run(scenario()) == []


def test_a_disconnect_raised_from_send_is_no_app_error(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    cycle, owner = make()
    cycle.disconnect()
    run(run_app(app, cycle, owner))
    assert owner.calls == [("finished",)]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("when", ["before-start", "after-start-before-body"])
def test_app_exception_before_body_fails_with_500(when: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if when == "after-start-before-body":
            await send(START)
        raise ValueError("boom")

    cycle, owner = make()
    run(run_app(app, cycle, owner))
    assert owner.calls == [("failed", 500), ("finished",)]


def test_app_exception_while_streaming_closes_without_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    cycle, owner = make()
    run(run_app(app, cycle, owner))
    assert owner.calls[-2:] == [("failed", 200), ("finished",)]


def test_app_returning_without_response_fails_with_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    cycle, owner = make()
    run(run_app(app, cycle, owner))
    assert owner.calls == [("failed", 500), ("finished",)]


class TrailerOwner(RecordingOwner):
    """An owner that sends trailers (as HTTP/2 does)."""

    def send_trailers(
        self, cycle: Cycle, headers: Iterable[tuple[bytes, bytes]], more: bool
    ) -> None:
        self.calls.append(("trailers", list(headers), more))


TRAILERS_START = {**START, "trailers": True}
LAST_BODY = {"type": "http.response.body", "body": b"end"}


def test_trailers_follow_a_body_that_stays_open_on_the_wire() -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        owner = TrailerOwner()
        cycle = Cycle(owner, owner, {"type": "http", "method": "GET"}, False, False, True)
        await cycle.send(TRAILERS_START)
        await cycle.send(LAST_BODY)
        assert cycle.response is ResponseState.TRAILERS
        await cycle.send(
            {"type": "http.response.trailers", "headers": [(b"a", b"1")], "more_trailers": True}
        )
        await cycle.send({"type": "http.response.trailers", "headers": [(b"b", b"2")]})
        assert cycle.response is ResponseState.DONE
        return owner.calls

    assert run(scenario()) == [
        ("start", 200, b"end", True),
        ("trailers", [(b"a", b"1")], True),
        ("trailers", [(b"b", b"2")], False),
        ("complete",),
    ]


def test_an_owner_without_trailers_ends_the_body_and_completes_after_the_trailers() -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        cycle, owner = make()
        await cycle.send(TRAILERS_START)
        await cycle.send(LAST_BODY)
        assert owner.calls == [("start", 200, b"end", False)]
        await cycle.send({"type": "http.response.trailers", "headers": [(b"a", b"1")]})
        return owner.calls

    assert run(scenario()) == [("start", 200, b"end", False), ("complete",)]


@pytest.mark.parametrize(
    "messages",
    [
        [TRAILERS_START, {"type": "http.response.trailers", "headers": []}],
        [TRAILERS_START, LAST_BODY, LAST_BODY],
        [START, LAST_BODY, {"type": "http.response.trailers", "headers": []}],
    ],
)
def test_trailers_out_of_place_are_refused(messages: list[dict[str, Any]]) -> None:
    async def scenario() -> None:
        owner = TrailerOwner()
        cycle = Cycle(owner, owner, {"type": "http", "method": "GET"}, False, False, True)
        for message in messages[:-1]:
            await cycle.send(message)
        with pytest.raises(RuntimeError):
            await cycle.send(messages[-1])

    run(scenario())


def test_an_app_that_never_sends_its_promised_trailers_fails_without_a_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(TRAILERS_START)
        await send(LAST_BODY)

    async def scenario() -> list[tuple[Any, ...]]:
        cycle, owner = make()
        await run_app(app, cycle, owner)
        return owner.calls

    calls = run(scenario())
    assert ("failed", 200) in calls
