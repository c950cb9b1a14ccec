"""Overload shedding against a real `serve`: it engages under load and releases after.

One worker whose app holds the loop 20 ms per request is offered about three times what it
can answer, each request on a new connection on a fixed schedule (open loop, as real
clients arrive); the test counts the answers, reads the worker's log and /metrics.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import h2.events as ev
import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.h2_client import RawH2
from tests.system.test_metrics import Metrics

pytestmark = pytest.mark.system

RATE = 150  # requests/s offered; the app answers at most 50/s
SECONDS = 3.0


async def one_request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /burn?ms=20 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()


async def offer(port: int) -> list[bytes]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(int(RATE * SECONDS)):
        await asyncio.sleep(max(0.0, start + i / RATE - loop.time()))
        tasks.append(asyncio.ensure_future(one_request(port)))
    return await asyncio.gather(*tasks)


def start(start_serve: StartServe, tmp_path: Path) -> tuple[ServeProcess, Metrics]:
    config = write_config(
        tmp_path / "serve.yaml",
        app="overload_apps:app",
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
        access_log=False,
        backlog=4096,
        shedding={"enabled": True, "target": 0.02, "interval": 0.2},
        http2=True,
    )
    serve = start_serve(config=config)
    return serve, Metrics(serve)


def test_shedding_engages_under_overload_and_releases(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path)
    answers: list[bytes] = []
    load = threading.Thread(target=lambda: answers.extend(asyncio.run(offer(serve.port))))
    load.start()
    # An HTTP/2 connection opened before the overload has its new streams shed too, and
    # lives on: 503 on the stream, not the end of the connection.
    h2_statuses: list[int] = []
    client = RawH2(serve.port, timeout=60)
    try:
        while load.is_alive() and 503 not in h2_statuses:
            status, _, _ = client.response(client.request("/burn?ms=1"))
            h2_statuses.append(status)
        assert 503 in h2_statuses
        retry_after = [
            dict(event.headers or []).get(b"retry-after")
            for event in client.events
            if isinstance(event, ev.ResponseReceived)
        ]
        assert b"1" in retry_after
    finally:
        load.join()
        client.close()
    statuses = [int(answer.split(b" ", 2)[1]) for answer in answers]
    shed = [answer for answer, status in zip(answers, statuses, strict=True) if status == 503]
    shed_h2 = h2_statuses.count(503)
    assert set(statuses) == {200, 503}, "every request is answered, served or shed"
    assert all(b"\r\nretry-after: 1\r\n" in answer.lower() for answer in shed)
    log = serve.wait_log("shedding load: requests have waited over 0.02 s")
    # Load gone: the episode ends and the worker serves every request again.
    serve.wait_log(r"load shedding ended after [\d.]+ s: \d+ requests answered 503")
    assert httpx.get(serve.url + "/burn?ms=1", timeout=10).status_code == 200
    metrics.wait_for("serve_shed_requests_total", len(shed) + shed_h2)
    wait_until(lambda: metrics.value("serve_workers_shedding") == 0)
    assert "shedding load" in log


def test_off_by_default_nothing_is_shed(start_serve: StartServe) -> None:
    serve = start_serve("overload_apps:app", "--no-access-log")

    async def burst() -> list[bytes]:
        return await asyncio.gather(*(one_request(serve.port) for _ in range(100)))

    answers = asyncio.run(burst())
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    assert "shedding" not in serve.log()
