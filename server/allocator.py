"""One setting of the C allocator for a worker's life: keep some free heap instead of
returning it to the kernel after every burst.

A worker frees request and response buffers (64 KiB and up) in bursts. glibc gives the
free top of its heap back to the kernel as soon as it passes 128 KiB, and takes it again
with the next burst, page faults and zeroing included: on the 64 KiB echo that
trim-and-grow cycle cost a third of the throughput at 64 connections and half at 256, once
buffers were released promptly. M_TOP_PAD keeps TOP_PAD bytes at the top of the heap across
trims (and makes each growth that much larger; pages count in RSS only once touched), so
the cycle stops while the worker still returns what it holds beyond that. Setting it also
fixes glibc's mmap threshold at its default, which otherwise rises to the largest block
freed so far and sends later large blocks into the heap, where they fragment it. Other C
libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes

M_TOP_PAD = -2  # glibc <malloc.h>
TOP_PAD = 32 * 1024 * 1024


def tune_allocator() -> bool:
    """Apply the setting where glibc's mallopt() exists; True when it took."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    # gnu_get_libc_version exists only in glibc, whose mallopt knows M_TOP_PAD.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TOP_PAD, TOP_PAD))
