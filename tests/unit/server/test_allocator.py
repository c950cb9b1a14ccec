"""The worker's allocator setting takes on glibc, the C library CI and the bench run on: the
pad keeps a burst's free heap, which give_back() returns, and only when there is some."""

from __future__ import annotations

import platform

from serve.server.allocator import GIVE_BACK_MIN, free_top, give_back, tune_allocator

BLOCK = 100 * 1024  # below the mmap threshold: from the heap, as request bodies are


def test_top_pad_is_set_on_glibc() -> None:
    assert platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is True


def test_a_freed_burst_stays_at_the_top_until_given_back() -> None:
    assert tune_allocator() is True
    burst = [b"\x01" * BLOCK for _ in range(8 * GIVE_BACK_MIN // BLOCK)]
    del burst
    assert free_top() >= 4 * GIVE_BACK_MIN
    assert give_back() is True
    assert free_top() < GIVE_BACK_MIN
    # Nothing worth a trim left: the next idle spell costs no system call.
    assert give_back() is False
