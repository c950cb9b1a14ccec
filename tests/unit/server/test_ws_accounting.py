"""A WebSocket handshake is a request like any other to the worker's accounting: it counts
in the worker's requests and in the metrics STATS (status class, duration histogram), as
HTTP/1.1 and HTTP/2 requests do, and the app's task is tracked until it returns."""

from __future__ import annotations

from serve.server.stats import STATS
from serve.server.types import Receive, Scope, Send
from tests.unit.server.test_ws_harness import Client, eventually, run, serving


async def accept_then_return(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


async def close_before_accepting(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.close"})


def test_an_accepted_websocket_counts_as_a_1xx_response() -> None:
    STATS.reset()

    async def main() -> None:
        async with serving(accept_then_return) as (ctx, port):
            client = await Client.open(port)
            await client.accepted()
            assert (await client.closed()).code == 1000
            await eventually(lambda: not ctx.tasks)
            assert ctx.requests == 1
            await client.close()

    run(main, "uvloop")
    assert STATS.responses == [1, 0, 0, 0, 0]
    assert sum(STATS.durations) == 1
    assert STATS.duration_sum > 0


def test_a_refused_websocket_counts_as_its_status() -> None:
    STATS.reset()

    async def main() -> None:
        async with serving(close_before_accepting) as (ctx, port):
            client = await Client.open(port)
            status, _, _ = await client.rejected()
            assert status == 403
            await eventually(lambda: ctx.requests == 1 and not ctx.tasks)
            await client.close()

    run(main, "asyncio")
    assert STATS.responses == [0, 0, 0, 1, 0]
    assert sum(STATS.durations) == 1
