"""The worker's allocator setting takes on glibc, the C library CI and the bench run on: the
pad keeps a burst's free heap, which give_back() returns, and only when there is some."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

from serve.server.allocator import tune_allocator
from tests.conftest import serve_env

# In a fresh process: the suite's own heap, fragmented by thousands of tests, could hold the
# burst in free chunks below its top.
BURST = """
import json
from serve.server.allocator import GIVE_BACK_MIN, free_top, give_back, tune_allocator

tuned = tune_allocator()
burst = [b"\\x01" * (100 * 1024) for _ in range(80)]  # below the mmap threshold: heap blocks
del burst
after_burst = free_top()
returned = give_back()
after_give_back = free_top()
print(json.dumps([tuned, GIVE_BACK_MIN, after_burst, returned, after_give_back, give_back()]))
"""


def test_top_pad_is_set_on_glibc() -> None:
    assert platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is True


def test_a_freed_burst_stays_at_the_top_until_given_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BURST], env=serve_env(), capture_output=True, text=True, check=True
    )
    tuned, least, after_burst, returned, after_give_back, again = json.loads(done.stdout)
    assert tuned is True
    # 8 MiB freed: the pad keeps it, where glibc alone would keep 128 KiB.
    assert after_burst >= 4 * least
    assert returned is True
    assert after_give_back < least
    # Nothing worth a trim left: the next idle spell costs no system call.
    assert again is False
