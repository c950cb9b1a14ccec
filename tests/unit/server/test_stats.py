"""Worker response counters and the heartbeat that carries them to the master."""

from __future__ import annotations

import json

import pytest

from server import channel as ch
from server.stats import (
    DURATION_BUCKETS_S,
    SHED,
    ZERO_DURATIONS,
    ZERO_OVERLOAD,
    ZERO_RESPONSES,
    ResponseStats,
)


def test_record_counts_status_classes_and_duration_buckets() -> None:
    stats = ResponseStats()
    stats.record(200, 0.001)
    stats.record(204, 0.005)
    stats.record(404, 0.0051)
    stats.record(503, 99.0)
    stats.record(101, 0.3)
    assert stats.responses == [1, 2, 0, 1, 1]
    # A duration equal to a bound is in that bucket (Prometheus' `le`).
    assert stats.durations[0] == 2
    assert stats.durations[1] == 1
    assert stats.durations[DURATION_BUCKETS_S.index(0.5)] == 1
    assert stats.durations[-1] == 1
    assert sum(stats.durations) == 5
    assert stats.duration_sum == pytest.approx(99.3111)


@pytest.mark.parametrize("status", [0, 99, 600, 1000])
def test_a_status_outside_the_classes_counts_only_in_the_histogram(status: int) -> None:
    stats = ResponseStats()
    stats.record(status, 0.02)
    assert stats.responses == list(ZERO_RESPONSES)
    assert sum(stats.durations) == 1


def test_reset_starts_from_zero() -> None:
    stats = ResponseStats()
    stats.record(200, 1.0)
    stats.overload[SHED] += 1
    stats.reset()
    assert (stats.responses, stats.durations, stats.duration_sum, stats.overload) == (
        list(ZERO_RESPONSES),
        list(ZERO_DURATIONS),
        0.0,
        list(ZERO_OVERLOAD),
    )


def test_a_heartbeat_with_counters_survives_the_channel() -> None:
    durations = (1, *ZERO_DURATIONS[1:-1], 2)
    heartbeat = ch.WorkerHeartbeat(3, 1, (0, 2, 0, 1, 0), durations, 20.5)
    assert ch.decode(ch.encode(heartbeat)) == heartbeat
    overloaded = ch.WorkerHeartbeat(3, 1, overload=(1, 2, 3, 4), shedding=True)
    assert ch.decode(ch.encode(overloaded)) == overloaded


def test_a_heartbeat_without_counters_decodes_with_zeros() -> None:
    decoded = ch.decode(b'{"t":"hb","requests":4,"connections":2}')
    assert decoded == ch.WorkerHeartbeat(4, 2)
    assert isinstance(decoded, ch.WorkerHeartbeat)
    assert decoded.responses == ZERO_RESPONSES
    assert decoded.durations == ZERO_DURATIONS
    assert (decoded.overload, decoded.shedding) == (ZERO_OVERLOAD, False)


@pytest.mark.parametrize(
    "extra",
    [
        {"responses": [0, 1, 2]},
        {"responses": [0, 1, 2, 3, -1]},
        {"responses": [0, 1, 2, 3, 4.5]},
        {"responses": "01234"},
        {"durations": [0] * (len(ZERO_DURATIONS) - 1)},
        {"durations": [True] * len(ZERO_DURATIONS)},
        {"duration_sum": "1"},
        {"duration_sum": None},
        {"overload": [0, 1]},
        {"overload": [0, 1, 2, -3]},
    ],
)
def test_counters_of_the_wrong_shape_make_the_heartbeat_unreadable(
    extra: dict[str, object],
) -> None:
    body = {"t": "hb", "requests": 1, "connections": 0, **extra}
    assert ch.decode(json.dumps(body).encode()) is None
