"""ConnectionCap: who gives way at the cap, and the warning at most once per interval."""

from __future__ import annotations

import logging

import pytest

from server.capacity import LOG_INTERVAL_S, ConnectionCap, fd_budget
from server.stats import IDLE_CLOSED, REFUSED, STATS


class Conn:
    def __init__(self, mark: int | None) -> None:
        self.mark = mark
        self.closed = False

    def reuse_mark(self) -> int | None:
        return None if self.closed else self.mark

    def close_idle(self) -> None:
        self.closed = True


def test_under_the_cap_nothing_gives_way() -> None:
    conns = [Conn(1), Conn(2)]
    assert ConnectionCap(3, "max_connections").admit(3, conns, 0.0)
    assert not any(conn.closed for conn in conns)


def test_over_the_cap_the_longest_idle_is_closed() -> None:
    busy, newer, oldest = Conn(None), Conn(7), Conn(3)
    before = STATS.overload[IDLE_CLOSED]
    assert ConnectionCap(3, "max_connections").admit(4, [busy, newer, oldest], 0.0)
    assert (busy.closed, newer.closed, oldest.closed) == (False, False, True)
    assert STATS.overload[IDLE_CLOSED] == before + 1


def test_with_none_idle_the_new_connection_is_refused() -> None:
    before = STATS.overload[REFUSED]
    assert not ConnectionCap(2, "max_connections").admit(3, [Conn(None), Conn(None)], 0.0)
    assert STATS.overload[REFUSED] == before + 1


def test_one_warning_per_interval_with_the_counts_since_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cap = ConnectionCap(1, "max_connections")
    with caplog.at_level(logging.WARNING, logger="serve"):
        cap.admit(2, [Conn(1)], 100.0)
        for _ in range(3):
            cap.admit(2, [Conn(None)], 101.0)
        cap.admit(2, [Conn(None)], 100.0 + LOG_INTERVAL_S)
    assert [record.getMessage() for record in caplog.records] == [
        "connection limit 1 (max_connections) reached: 1 idle connections closed to make "
        "room, 0 new ones refused since the last report",
        "connection limit 1 (max_connections) reached: 0 idle connections closed to make "
        "room, 4 new ones refused since the last report",
    ]


def test_the_fd_limit_bounds_max_connections() -> None:
    budget = fd_budget()
    assert budget is not None
    room, soft = budget
    assert 0 < room < soft
    cap = ConnectionCap.build(room + 1000)
    assert cap is not None and cap.limit == room
    assert cap.why == f"the file descriptors RLIMIT_NOFILE {soft} leaves"
    smaller = ConnectionCap.build(5)
    assert smaller is not None and (smaller.limit, smaller.why) == (5, "max_connections")
