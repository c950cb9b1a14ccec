"""The worker's allocator setting takes on glibc, the C library CI and the bench run on."""

from __future__ import annotations

import platform

from serve.server.allocator import tune_allocator


def test_top_pad_is_set_on_glibc() -> None:
    assert platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is True
