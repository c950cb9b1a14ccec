"""/healthz is liveness (the master's loop turns and its workers are not crash-looping),
/readyz is readiness (a worker serves and no stop has begun): what probes rely on."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config

pytestmark = pytest.mark.system


def metrics_url(serve: ServeProcess) -> str:
    log = serve.wait_log(r"Metrics on http://127\.0\.0\.1:\d+")
    port = re.search(r"Metrics on http://127\.0\.0\.1:(\d+)", log)
    assert port is not None
    return f"http://127.0.0.1:{port.group(1)}"


def test_healthz_fails_while_the_workers_crash_loop(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        app="crashing_apps:crash_soon",
        bind="127.0.0.1:0",
        workers=1,
        metrics={"bind": "127.0.0.1:0"},
    )
    serve = start_serve(config=config)
    url = metrics_url(serve)

    def healthz() -> httpx.Response:
        return httpx.get(url + "/healthz", timeout=10)

    response = wait_until(lambda: (r := healthz()).status_code == 503 and r, timeout=30)
    assert response.text == "crash-looping: workers keep dying before they are stable\n"
    assert serve.log().count("exited with code 1") >= 5
    assert serve.proc.poll() is None


def test_while_workers_boot_the_master_is_live_but_not_ready(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        app="master_apps:slow_startup",
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
    )
    serve = start_serve(config=config, wait=False)
    url = metrics_url(serve)
    serve.wait_log("app: startup is waiting")
    # What a startupProbe or a Docker HEALTHCHECK must probe: readiness, not liveness.
    assert httpx.get(url + "/readyz", timeout=10).status_code == 503
    assert httpx.get(url + "/healthz", timeout=10).status_code == 200
