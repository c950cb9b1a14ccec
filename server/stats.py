"""Per-worker response counters, reported to the master in each heartbeat.

Rules: one ResponseStats per worker process (STATS), fed by the connection once per
finished response with record(status, duration_s), or record_without_head(status) for an
answer to a head serve could not read (no request, no duration), and read by the worker's
heartbeat. It
only counts: no IO, no clock, no lock (a worker is one thread). Counters are cumulative
for the worker's life and never go down, so the master can add the last report of an
exited worker to its totals. The master forks workers but never records, so a fresh
worker starts from zero; Worker.run() resets anyway, for a worker built in-process.
Buckets follow Prometheus' default histogram: a request lands in the first bucket whose
upper bound it does not exceed, and the last slot is +Inf. `overload` counts what the worker
did to stay up, indexed by the constants below and named (for /metrics) by OVERLOAD_EVENTS.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds (seconds) of the request-duration histogram's buckets, +Inf left implicit.
DURATION_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# 1xx to 5xx; a status outside 100-599 counts in the histogram but in no class.
STATUS_CLASSES = 5
ZERO_RESPONSES = (0,) * STATUS_CLASSES
ZERO_DURATIONS = (0,) * (len(DURATION_BUCKETS_S) + 1)
OVERLOAD_EVENTS = (
    "request_timeouts",  # apps cancelled at request_timeout
    "shed_requests",  # requests answered 503 while shedding
    "idle_connections_closed",  # idle connections closed to make room for new ones
    "connections_refused",  # new connections answered 503 at once: no room under the cap
)
TIMED_OUT, SHED, IDLE_CLOSED, REFUSED = range(len(OVERLOAD_EVENTS))
ZERO_OVERLOAD = (0,) * len(OVERLOAD_EVENTS)


class ResponseStats:
    __slots__ = ("duration_sum", "durations", "overload", "responses")

    def __init__(self) -> None:
        self.responses = list(ZERO_RESPONSES)
        self.durations = list(ZERO_DURATIONS)
        self.duration_sum = 0.0
        self.overload = list(ZERO_OVERLOAD)

    def record(self, status: int, duration_s: float) -> None:
        """One response finished (or failed) `duration_s` after its request head arrived."""
        index = status // 100 - 1
        if 0 <= index < STATUS_CLASSES:
            self.responses[index] += 1
        self.durations[bisect_left(DURATION_BUCKETS_S, duration_s)] += 1
        self.duration_sum += duration_s

    def record_without_head(self, status: int) -> None:
        """serve answered where no request head was read (a malformed head, a refused
        connection): a response by its class, but no request duration."""
        index = status // 100 - 1
        if 0 <= index < STATUS_CLASSES:
            self.responses[index] += 1

    def reset(self) -> None:
        self.responses[:] = ZERO_RESPONSES
        self.durations[:] = ZERO_DURATIONS
        self.duration_sum = 0.0
        self.overload[:] = ZERO_OVERLOAD


STATS = ResponseStats()
