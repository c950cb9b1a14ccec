"""The C allocator of a worker: keep some free heap while the worker is busy, give it all
back once nothing is open.

A worker frees request and response buffers (64 KiB and up) in bursts. glibc gives the
free top of its heap back to the kernel as soon as it passes 128 KiB, and takes it again
with the next burst, page faults and zeroing included: on the 64 KiB echo that
trim-and-grow cycle cost a third of the throughput at 64 connections and half at 256, once
buffers were released promptly. M_TOP_PAD keeps TOP_PAD bytes at the top of the heap across
trims (and makes each growth that much larger; pages count in RSS only once touched), so
the cycle stops while the worker still returns what it holds beyond that. Setting it also
fixes glibc's mmap threshold at its default, which otherwise rises to the largest block
freed so far and sends later large blocks into the heap, where they fragment it.

The pad's price is resident memory: after a burst of large bodies at high concurrency, up to
TOP_PAD of touched free heap stays in the worker's RSS. It only pays off while requests keep
coming, so when the worker has no connection open and no app running (server.context)
give_back() returns the free heap, pad included; the next request grows it again, a cost
paid once per idle spell, not per burst. Other C libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes
import functools

M_TOP_PAD = -2  # glibc <malloc.h>
TOP_PAD = 32 * 1024 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # gnu_get_libc_version exists only in glibc, whose mallopt knows M_TOP_PAD.
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def tune_allocator() -> bool:
    """Apply the setting where glibc's mallopt() exists; True when it took."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_TOP_PAD, TOP_PAD))


def give_back() -> bool:
    """Return every free page of the heap to the kernel; True when glibc returned some."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
