"""The /metrics series for a known state, read back with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from serve.server.channel import DURATION_BUCKETS_S, ZERO_DURATIONS
from serve.supervisor.fleet import (
    Phase,
    Policy,
    SlotRecord,
    SupervisorState,
    TemplateRecord,
    Traffic,
    WorkerRecord,
    WorkerState,
)
from serve.supervisor.metrics_series import build_registry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def record(pid: int, generation: int, state: WorkerState, **fields: Any) -> WorkerRecord:
    base = WorkerRecord(pid, pid % 10, generation, state, started_at=0.0, last_heartbeat=0.0)
    return replace(base, **fields)


def fleet(*records: WorkerRecord, **fields: Any) -> SupervisorState:
    state = SupervisorState(
        policy=Policy(),
        slots={0: SlotRecord(due=None), 1: SlotRecord(due=None)},
        workers={r.pid: r for r in records},
        phase=Phase.SERVING,
    )
    return replace(state, **fields)


def scrape(state: SupervisorState, started_at: float = 0.0) -> Samples:
    registry = build_registry(lambda: state, started_at)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def traffic(requests: int, responses: tuple[int, ...], *durations: int) -> Traffic:
    return Traffic(requests, responses, durations + ZERO_DURATIONS[len(durations) :], 0.5)


def test_workers_by_state_and_generation_with_zeros_for_the_current_generation() -> None:
    state = fleet(
        record(100, 1, WorkerState.DRAINING),
        record(101, 2, WorkerState.READY),
        record(102, 2, WorkerState.STARTING),
        generation=2,
    )
    samples = scrape(state)
    assert samples[("serve_workers", (("generation", "1"), ("state", "draining")))] == 1
    assert samples[("serve_workers", (("generation", "2"), ("state", "ready")))] == 1
    assert samples[("serve_workers", (("generation", "2"), ("state", "starting")))] == 1
    assert samples[("serve_workers", (("generation", "2"), ("state", "retiring")))] == 0
    assert ("serve_workers", (("generation", "1"), ("state", "ready"))) not in samples
    assert samples[("serve_generation", ())] == 2
    assert samples[("serve_desired_workers", ())] == 2
    assert samples[("serve_ready", ())] == 1


def test_not_ready_while_delaying_or_without_a_serving_worker() -> None:
    assert scrape(fleet(record(100, 1, WorkerState.STARTING)))[("serve_ready", ())] == 0
    delaying = fleet(record(100, 1, WorkerState.READY), phase=Phase.DELAYING)
    assert scrape(delaying)[("serve_ready", ())] == 0


def test_per_worker_memory_and_cpu_once_probed_and_connections_summed() -> None:
    state = fleet(
        record(100, 1, WorkerState.READY, rss=1000, cpu_s=1.5, connections=3),
        record(101, 1, WorkerState.READY, connections=2),
    )
    samples = scrape(state)
    labels = (("generation", "1"), ("pid", "100"))
    assert samples[("serve_worker_resident_memory_bytes", labels)] == 1000
    assert samples[("serve_worker_cpu_seconds_total", labels)] == 1.5
    assert ("serve_worker_resident_memory_bytes", (("generation", "1"), ("pid", "101"))) not in (
        samples
    )
    assert samples[("serve_open_connections", ())] == 5


def test_restarts_and_reloads_list_every_label_with_zeros() -> None:
    state = fleet(restarts={"crash": 2, "reload": 4}, reloads={"failed": 1})
    samples = scrape(state)
    restarts = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "serve_worker_restarts_total"
    }
    assert restarts == {"crash": 2, "timeout": 0, "memory": 0, "max_requests": 0, "reload": 4}
    assert samples[("serve_reloads_total", (("result", "ok"),))] == 0
    assert samples[("serve_reloads_total", (("result", "failed"),))] == 1


def test_traffic_adds_exited_and_live_workers_into_a_cumulative_histogram() -> None:
    state = fleet(
        record(100, 1, WorkerState.READY, traffic=traffic(3, (0, 2, 0, 1, 0), 2, 1)),
        exited_traffic=traffic(5, (1, 3, 0, 0, 1), 0, 4, 0, 1),
    )
    samples = scrape(state)
    assert samples[("serve_requests_total", ())] == 8
    classes = {"1xx": 1, "2xx": 5, "3xx": 0, "4xx": 1, "5xx": 1}
    for label, count in classes.items():
        assert samples[("serve_responses_total", (("status_class", label),))] == count
    bucket = "serve_request_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.005"),))] == 2
    assert samples[(bucket, (("le", "0.01"),))] == 7
    assert samples[(bucket, (("le", "0.025"),))] == 7
    assert samples[(bucket, (("le", "0.05"),))] == 8
    assert samples[(bucket, (("le", "+Inf"),))] == 8
    assert samples[("serve_request_duration_seconds_count", ())] == 8
    assert samples[("serve_request_duration_seconds_sum", ())] == 1.0
    bounds = [dict(labels)["le"] for (name, labels) in samples if name == bucket]
    assert len(bounds) == len(DURATION_BUCKETS_S) + 1


def test_uptime_and_the_masters_own_process_series() -> None:
    samples = scrape(fleet(), started_at=-100.0)
    assert samples[("serve_master_uptime_seconds", ())] > 100
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_openmetrics_exposition_of_the_same_registry_parses() -> None:
    state = fleet(record(100, 1, WorkerState.READY, traffic=traffic(1, (0, 1, 0, 0, 0), 1)))
    text = openmetrics_latest(build_registry(lambda: state, 0.0)).decode()
    names = {family.name for family in openmetrics_families(text)}
    assert {"serve_requests", "serve_responses", "serve_request_duration_seconds"} <= names


def test_preload_templates_show_whether_they_imported_the_app_and_how_long_it_took() -> None:
    templates = {
        900: TemplateRecord(900, 1, started_at=10.0, ready_at=10.75),
        950: TemplateRecord(950, 2, started_at=20.0),
    }
    samples = scrape(fleet(templates=templates))
    first, second = (("generation", "1"), ("pid", "900")), (("generation", "2"), ("pid", "950"))
    assert samples["serve_preload_template_ready", first] == 1
    assert samples["serve_preload_template_ready", second] == 0
    assert samples["serve_preload_import_seconds", first] == 0.75
    assert ("serve_preload_import_seconds", second) not in samples


def test_no_preload_template_series_without_preload() -> None:
    names = {name for name, _ in scrape(fleet())}
    assert not any(name.startswith("serve_preload") for name in names)
