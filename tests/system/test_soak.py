"""A few seconds of the soak's mixed traffic (tests/soak/soak.py) in the regular suite.

Too short to judge memory growth (`make soak` does, over ten minutes); long enough to show
that every request shape is answered correctly and that the workers give back every file
descriptor the traffic opened.
"""

from __future__ import annotations

import pytest

from tests.soak.soak import run, summary

pytestmark = pytest.mark.system


def test_mixed_traffic_is_answered_and_leaves_no_descriptor_open() -> None:
    report = run(seconds=6, warmup=2, seed=3)
    print(summary(report))
    assert report.failures == []
    assert not report.replaced
    assert report.sent > 500
    # A 1 MiB download among them at least: 40+ MiB came back.
    assert report.received_mib > 40
    assert report.fd_baseline
    assert report.fd_after == report.fd_baseline
    assert max(max(s.fds.values()) for s in report.samples) > min(report.fd_baseline.values())
