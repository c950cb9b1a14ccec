"""What /metrics shows: Prometheus metric families read from the master's state.

Rules: a prometheus_client custom collector, so the exposition (text or OpenMetrics) is
prometheus_client's, never written by hand here. It reads the state the loop holds at the
moment of the scrape and keeps nothing: every counter comes from SupervisorState, which
only lets counters grow (the traffic of an exited worker stays in exited_traffic), so a
worker's replacement never makes a counter go backwards. Request, response and duration
counts come from the workers' heartbeats, so they lag by up to one heartbeat interval.
Per-worker series carry the worker's pid and generation; they end when the worker does.
The master's own process series (process_*) come from prometheus_client's ProcessCollector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from serve.server.channel import DURATION_BUCKETS_S, OVERLOAD_EVENTS
from serve.supervisor.fleet import (
    RESTART_REASONS,
    SupervisorState,
    Traffic,
    WorkerState,
    answers_ready,
    by_pid,
)

RELOAD_RESULTS = ("ok", "failed")
STATUS_CLASS_LABELS = ("1xx", "2xx", "3xx", "4xx", "5xx")
OVERLOAD_DOCS = dict(
    zip(
        OVERLOAD_EVENTS,
        (
            "Requests whose app was cancelled at request_timeout",
            "Requests answered 503 while their worker was shedding load",
            "Idle connections closed to make room for new ones (max_connections, fd limit)",
            "New connections answered 503 at once: none idle to close under the cap",
        ),
        strict=True,
    )
)


def build_registry(state: Callable[[], SupervisorState], started_at: float) -> CollectorRegistry:
    """A registry of the fleet's series (read through `state` at each scrape) and the
    master's process series; `started_at` is the master's start in time.monotonic()."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(state, started_at))
    ProcessCollector(registry=registry)
    return registry


class FleetCollector:
    def __init__(self, state: Callable[[], SupervisorState], started_at: float) -> None:
        self._state = state
        self._started_at = started_at

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        yield from _fleet(state)
        yield from _workers(state)
        yield from _templates(state)
        yield from _replacements(state)
        yield from _traffic(state)
        yield GaugeMetricFamily(
            "serve_master_uptime_seconds",
            "Seconds since the master started",
            value=time.monotonic() - self._started_at,
        )


def _fleet(state: SupervisorState) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "serve_ready", "1 while /readyz answers 200, else 0", value=int(answers_ready(state))
    )
    yield GaugeMetricFamily(
        "serve_generation", "Generation new workers start from", value=state.generation
    )
    yield GaugeMetricFamily("serve_desired_workers", "Configured workers", value=state.desired)
    workers = GaugeMetricFamily(
        "serve_workers", "Worker processes by state and generation", labels=["state", "generation"]
    )
    counts: dict[tuple[str, int], int] = {(kind.value, state.generation): 0 for kind in WorkerState}
    for record in state.workers.values():
        key = (record.state.value, record.generation)
        counts[key] = counts.get(key, 0) + 1
    for (kind, generation), count in sorted(counts.items()):
        workers.add_metric([kind, str(generation)], count)
    yield workers


def _workers(state: SupervisorState) -> Iterator[Metric]:
    labels = ["pid", "generation"]
    rss = GaugeMetricFamily(
        "serve_worker_resident_memory_bytes",
        "Resident memory of each worker at the last health probe",
        labels=labels,
    )
    cpu = CounterMetricFamily(
        "serve_worker_cpu_seconds",
        "CPU time (user + system) of each worker at the last health probe",
        labels=labels,
    )
    connections = GaugeMetricFamily(
        "serve_open_connections", "Open client connections at the workers' last heartbeats"
    )
    for record in by_pid(state):
        if record.rss:
            rss.add_metric([str(record.pid), str(record.generation)], record.rss)
            cpu.add_metric([str(record.pid), str(record.generation)], record.cpu_s)
    connections.add_metric([], sum(record.connections for record in state.workers.values()))
    shedding = GaugeMetricFamily(
        "serve_workers_shedding", "Workers answering new requests 503 (loop lag over target)"
    )
    shedding.add_metric([], sum(record.shedding for record in state.workers.values()))
    yield from (rss, cpu, connections, shedding)


def _templates(state: SupervisorState) -> Iterator[Metric]:
    """preload: each generation's template, and how long its import of the app took."""
    labels = ["pid", "generation"]
    running = GaugeMetricFamily(
        "serve_preload_template_ready",
        "Preload templates: 1 once the app is imported, 0 while it loads",
        labels=labels,
    )
    imported = GaugeMetricFamily(
        "serve_preload_import_seconds",
        "Seconds each preload template took to import the app",
        labels=labels,
    )
    for record in sorted(state.templates.values(), key=lambda r: r.pid):
        values = [str(record.pid), str(record.generation)]
        running.add_metric(values, int(record.ready_at is not None))
        if record.ready_at is not None:
            imported.add_metric(values, record.ready_at - record.started_at)
    yield from (running, imported)


def _replacements(state: SupervisorState) -> Iterator[Metric]:
    restarts = CounterMetricFamily(
        "serve_worker_restarts", "Workers replaced, by reason", labels=["reason"]
    )
    for reason in RESTART_REASONS:
        restarts.add_metric([reason], state.restarts.get(reason, 0))
    reloads = CounterMetricFamily(
        "serve_reloads", "Reloads (HUP, file changes) by result", labels=["result"]
    )
    for result in RELOAD_RESULTS:
        reloads.add_metric([result], state.reloads.get(result, 0))
    yield from (restarts, reloads)


def _traffic(state: SupervisorState) -> Iterator[Metric]:
    total = state.exited_traffic
    for record in state.workers.values():
        total = total.plus(record.traffic)
    yield CounterMetricFamily(
        "serve_requests", "Requests the workers finished", value=total.requests
    )
    responses = CounterMetricFamily(
        "serve_responses", "Responses by status class", labels=["status_class"]
    )
    for label, count in zip(STATUS_CLASS_LABELS, total.responses, strict=True):
        responses.add_metric([label], count)
    yield responses
    yield _duration_histogram(total)
    for (name, doc), count in zip(OVERLOAD_DOCS.items(), total.overload, strict=True):
        yield CounterMetricFamily(f"serve_{name}", doc, value=count)


def _duration_histogram(total: Traffic) -> Metric:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    bounds = [*(str(bound) for bound in DURATION_BUCKETS_S), "+Inf"]
    for bound, count in zip(bounds, total.durations, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(
        "serve_request_duration_seconds",
        "Time from a request's head to the end of its response",
        buckets=buckets,
        sum_value=total.duration_sum,
    )
