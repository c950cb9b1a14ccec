"""HTTP/2 under reload: keep-alive HTTP/2 clients lose no request while the master rolls
its workers over several SIGHUPs.

The clients are httpx with HTTP/2 only, over TLS (ALPN h2) and over cleartext (prior
knowledge), one thread each, one request at a time on one pooled connection, as browsers and
API clients use a connection. httpx retries a request by itself only when the server has
said that the stream was not processed (a GOAWAY whose last stream id is below it); any
other failure is an exception or a non-200, and the test counts it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.tls_certs import client_context, server_leaf, write_leaf

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"
# Bound of each client loop, should the test never tell it to stop.
MAX_REQUESTS = 50_000
RELOADS = 5


@dataclass
class H2Client:
    """One thread sending GETs one after another through one httpx HTTP/2 client."""

    client: httpx.Client
    stop: threading.Event
    ok: int = 0
    pids: set[int] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        with self.client:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                try:
                    response = self.client.get("/")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"status {response.status_code}")
                    continue
                self.ok += 1
                self.pids.add(int(response.text))
                self.versions.add(response.http_version)


@contextmanager
def traffic(clients: list[httpx.Client]) -> Iterator[list[H2Client]]:
    stop = threading.Event()
    loops = [H2Client(client, stop) for client in clients]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        yield loops
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


def wait_for_more(loops: list[H2Client], requests: int) -> None:
    targets = [loop.ok + requests for loop in loops]
    wait_until(lambda: all(loop.ok >= t for loop, t in zip(loops, targets, strict=True)))


def start(start_serve: StartServe, directory: Path, **keys: object) -> ServeProcess:
    config = write_config(
        directory / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        workers=2,
        access_log=False,
        http2={"enabled": True},
        **keys,
    )
    return start_serve(config=config)


def roll(serve: ServeProcess, loops: list[H2Client]) -> None:
    """RELOADS reloads, each one over (the old workers gone) before the next."""
    for generation in range(2, 2 + RELOADS):
        old = set(serve.worker_pids())
        serve.signal(signal.SIGHUP)
        serve.wait_log(f"generation {generation} ready; retiring the previous workers", timeout=30)
        wait_until(lambda old=old: old.isdisjoint(serve.worker_pids()), timeout=30)
        wait_for_more(loops, 20)


def check(serve: ServeProcess, loops: list[H2Client]) -> None:
    for loop in loops:
        assert loop.failures == []
        assert loop.versions == {"HTTP/2"}
        # Each client's connection moved to the new generation at every reload.
        assert len(loop.pids) == RELOADS + 1
    log = serve.wait_log("exited with code 0", count=2 * RELOADS)
    assert "WARNING" not in log


def test_sighups_under_h2_keep_alive_load_over_tls_fail_no_request(
    start_serve: StartServe, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = write_leaf(server_leaf(ca), tmp_path, "server")
    ssl = {"certfile": str(cert.certfile), "keyfile": str(cert.keyfile)}
    serve = start(start_serve, tmp_path, ssl=ssl)
    base = f"https://127.0.0.1:{serve.port}"
    clients = [
        httpx.Client(base_url=base, http1=False, http2=True, verify=client_context(ca), timeout=15)
        for _ in range(3)
    ]
    with traffic(clients) as loops:
        wait_for_more(loops, 20)
        roll(serve, loops)
    check(serve, loops)


def test_sighups_under_h2c_keep_alive_load_fail_no_request(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start(start_serve, tmp_path)
    clients = [
        httpx.Client(base_url=serve.url, http1=False, http2=True, timeout=15) for _ in range(3)
    ]
    with traffic(clients) as loops:
        wait_for_more(loops, 20)
        roll(serve, loops)
    check(serve, loops)
