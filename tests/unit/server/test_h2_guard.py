"""The rapid-reset rate limit, driven with explicit times."""

from __future__ import annotations

from serve.server.h2_guard import ResetGuard


def test_a_burst_up_to_the_limit_passes_then_the_next_reset_fails() -> None:
    guard = ResetGuard(10, now=100.0)
    assert all(guard.allow(100.0) for _ in range(10))
    assert not guard.allow(100.0)


def test_the_allowance_refills_with_time() -> None:
    guard = ResetGuard(10, now=0.0)
    for _ in range(10):
        guard.allow(0.0)
    assert not guard.allow(0.05)
    # 0.5 s later, half the allowance is back.
    assert [guard.allow(0.55) for _ in range(6)] == [True] * 5 + [False]


def test_a_steady_rate_under_the_limit_is_never_cut_off() -> None:
    guard = ResetGuard(10, now=0.0)
    assert all(guard.allow(step * 0.2) for step in range(1000))


def test_a_loop_of_resets_is_stopped_within_the_limit() -> None:
    guard = ResetGuard(100, now=0.0)
    allowed = 0
    now = 0.0
    while guard.allow(now):
        allowed += 1
        now += 0.0001  # 10 000 resets per second
    assert 100 <= allowed < 120


def test_a_clock_going_backwards_adds_nothing() -> None:
    guard = ResetGuard(2, now=10.0)
    guard.allow(10.0)
    guard.allow(10.0)
    assert not guard.allow(5.0)
