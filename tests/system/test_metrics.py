"""/metrics, /healthz and /readyz from a real master: scraped with prometheus_client's parser
while traffic, a reload, a kill -9 and a shutdown_delay happen."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.unit.test_deploy_files import run_healthcheck

pytestmark = pytest.mark.system

APP = "metrics_apps:app"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Metrics:
    """Scrapes one master's metrics listener (its port is in the log) and remembers every
    counter it saw, to check that none ever went backwards."""

    def __init__(self, serve: ServeProcess) -> None:
        log = serve.wait_log(r"Metrics on http://127\.0\.0\.1:\d+")
        port = re.search(r"Metrics on http://127\.0\.0\.1:(\d+)", log)
        assert port is not None
        self.url = f"http://127.0.0.1:{port.group(1)}"
        self.seen: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        for key, value in samples.items():
            if key[0].endswith(("_total", "_count", "_sum", "_bucket")) and "pid" not in dict(
                key[1]
            ):
                assert value >= self.seen.get(key, 0.0), f"{key} went down to {value}"
                self.seen[key] = value
        return samples

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, frozenset(labels.items())), 0.0)

    def wait_for(self, name: str, expected: float, **labels: str) -> None:
        wait_until(lambda: self.value(name, **labels) == expected, timeout=20)


def start(start_serve: StartServe, tmp_path: Path, **keys: object) -> tuple[ServeProcess, Metrics]:
    config = write_config(
        tmp_path / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        metrics={"bind": "127.0.0.1:0"},
        access_log=False,
        **keys,
    )
    serve = start_serve(config=config)
    return serve, Metrics(serve)


def answer_pid(serve: ServeProcess, path: str = "/") -> int:
    response = httpx.get(serve.url + path, headers={"connection": "close"}, timeout=10)
    assert response.status_code == 200
    return int(response.text)


def test_counters_follow_traffic_a_reload_and_a_kill(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path, workers=2)
    first = serve.worker_pids()
    assert metrics.value("serve_workers", state="ready", generation="1") == 2
    assert metrics.value("serve_ready") == 1
    for _ in range(10):
        answer_pid(serve)
    metrics.wait_for("serve_requests_total", 10)
    wait_until(
        lambda: all(
            metrics.value("serve_worker_resident_memory_bytes", pid=str(pid), generation="1") > 0
            for pid in first
        )
    )

    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 2 ready")
    for pid in first:
        serve.wait_log(f"worker {pid} exited with code 0")
    samples = metrics.scrape()
    assert samples[("serve_workers", frozenset({("state", "ready"), ("generation", "2")}))] == 2
    assert ("serve_workers", frozenset({("state", "ready"), ("generation", "1")})) not in samples
    assert metrics.value("serve_reloads_total", result="ok") == 1
    assert metrics.value("serve_worker_restarts_total", reason="reload") == 2
    # The first generation's requests stay in the total after its workers are gone.
    assert metrics.value("serve_requests_total") == 10

    for _ in range(5):
        answer_pid(serve)
    metrics.wait_for("serve_requests_total", 15)
    victim = serve.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    serve.wait_log(f"worker {victim} killed by SIGKILL")
    metrics.wait_for("serve_workers", 2, state="ready", generation="2")
    assert metrics.value("serve_worker_restarts_total", reason="crash") == 1
    assert metrics.value("serve_requests_total") == 15
    assert metrics.value("serve_workers", state="starting", generation="2") == 0

    (tmp_path / "serve.yaml").write_text("workers: [broken\n")
    serve.signal(signal.SIGHUP)
    serve.wait_log("reload failed")
    assert metrics.value("serve_reloads_total", result="failed") == 1
    assert metrics.value("serve_reloads_total", result="ok") == 1
    assert metrics.value("serve_generation") == 2
    assert serve.stop() == 0


def test_responses_by_status_class_and_the_duration_histogram(
    start_serve: StartServe, tmp_path: Path
) -> None:
    """Needs every response to reach server.stats.STATS (WorkerContext.finish_request)."""
    serve, metrics = start(start_serve, tmp_path, workers=2)
    with httpx.Client(base_url=serve.url, timeout=10) as client:
        statuses = [client.get(f"/status/{code}").status_code for code in (200, 200, 302, 404)]
        statuses += [client.get(path).status_code for path in ("/status/500", "/slow", "/slow")]
    assert statuses == [200, 200, 302, 404, 500, 200, 200]
    metrics.wait_for("serve_request_duration_seconds_count", 7)
    assert metrics.value("serve_responses_total", status_class="2xx") == 4
    assert metrics.value("serve_responses_total", status_class="3xx") == 1
    assert metrics.value("serve_responses_total", status_class="4xx") == 1
    assert metrics.value("serve_responses_total", status_class="5xx") == 1
    assert metrics.value("serve_responses_total", status_class="1xx") == 0
    # /slow sleeps a second: above the 0.75 s bound, at most the +Inf bucket's count.
    bucket = "serve_request_duration_seconds_bucket"
    assert metrics.value(bucket, le="0.75") <= 5
    assert metrics.value(bucket, le="+Inf") == 7
    # Two seconds of sleep, less the millisecond by which the loop's cached clock may let a
    # timer fire early against the wall clock the duration is measured with.
    assert metrics.value("serve_request_duration_seconds_sum") >= 1.9
    assert metrics.value("serve_requests_total") == 7


def test_readyz_is_503_during_shutdown_delay_while_requests_are_still_served(
    start_serve: StartServe, tmp_path: Path
) -> None:
    # Long enough never to end by itself here: the test ends it with a second signal.
    serve, metrics = start(start_serve, tmp_path, shutdown_delay=120)
    [worker] = serve.worker_pids()
    assert metrics.get("/readyz").status_code == 200
    serve.signal(signal.SIGTERM)
    serve.wait_log(r"shutting down \(graceful\) in 120s \(shutdown_delay\)")
    assert metrics.get("/readyz").status_code == 503
    assert metrics.get("/healthz").status_code == 200
    assert metrics.value("serve_ready") == 0
    assert answer_pid(serve) == worker
    assert serve.worker_pids() == [worker]
    serve.signal(signal.SIGINT)
    serve.wait_log("without the rest of shutdown_delay")
    assert serve.wait_exit() == 0


def test_the_docker_healthcheck_passes_against_a_real_master(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve, metrics = start(start_serve, tmp_path)
    target = metrics.url.removeprefix("http://")
    assert run_healthcheck(f"{target}/healthz") == 0
    assert run_healthcheck(f"{target}/readyz") == 0
    assert run_healthcheck(f"{target}/nothing-here") == 1
    assert serve.stop() == 0
    assert run_healthcheck(f"{target}/readyz") == 1


def test_no_metrics_listener_unless_configured(start_serve: StartServe) -> None:
    serve = start_serve(APP)
    assert "Metrics on" not in serve.log()
    assert serve.stop() == 0
