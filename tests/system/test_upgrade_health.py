"""A USR2 upgrade drops no request, so the health endpoints must not say otherwise: the
metrics listener is handed to the new master like the app's sockets, and /readyz stays
200 while either master has ready workers."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServe, wait_until, write_config

pytestmark = pytest.mark.system

# Workers of the new master take a while to import this, as a large app would.
SLOW_IMPORT_APP = """
import time

time.sleep(1.5)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


class Prober(threading.Thread):
    """GET /readyz back to back; every answer that is not 200 (or no answer) is a failure."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.stop = threading.Event()
        self.answers = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.answers += 1
                if status != 200:
                    self.failures.append(str(status))


def test_readyz_stays_200_through_a_usr2_upgrade(start_serve: StartServe, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "slow_app.py").write_text(SLOW_IMPORT_APP)
    pidfile = tmp_path / "serve.pid"
    config = write_config(
        tmp_path / "serve.yaml",
        app="slow_app:app",
        app_dir=str(code),
        bind="127.0.0.1:0",
        workers=1,
        pidfile=str(pidfile),
        metrics={"bind": "127.0.0.1:0"},
    )
    serve = start_serve(config=config)
    port = re.search(r"Metrics on http://127\.0\.0\.1:(\d+)", serve.log())
    assert port is not None
    prober = Prober(f"http://127.0.0.1:{port.group(1)}/readyz")
    prober.start()
    try:
        wait_until(lambda: prober.answers > 0)
        serve.signal(signal.SIGUSR2)
        serve.wait_log("upgrade: this master takes over", timeout=30)
        assert serve.wait_exit(timeout=30) == 0
        seen = prober.answers
        wait_until(lambda: prober.answers > seen + 20)
    finally:
        prober.stop.set()
        prober.join()
    new_master = int(pidfile.read_text())
    assert new_master != serve.pid
    assert prober.failures == []
    os.kill(new_master, signal.SIGTERM)
    wait_until(lambda: not pidfile.exists())
