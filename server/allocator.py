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
paid once per idle spell, not per burst. A worker that goes idle between every request (one
client, a new connection each time) has little free at the top of its heap, and a trim would
then cost a madvise per free run of pages for nothing: give_back() trims only when the top
holds at least GIVE_BACK_MIN. Other C libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes
import functools

M_TOP_PAD = -2  # glibc <malloc.h>
TOP_PAD = 32 * 1024 * 1024
GIVE_BACK_MIN = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33+): keepcost is the free top of the main heap."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


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
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def tune_allocator() -> bool:
    """Apply the setting where glibc's mallopt() exists; True when it took."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_TOP_PAD, TOP_PAD))


def free_top() -> int:
    """Bytes free at the top of the main heap; 0 where glibc cannot tell (before 2.33)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    info: _MallInfo2 = libc.mallinfo2()
    return int(info.keepcost)


def give_back() -> bool:
    """Return every free page of the heap to the kernel if its top holds GIVE_BACK_MIN or
    more; True when glibc returned some."""
    libc = _glibc()
    return libc is not None and free_top() >= GIVE_BACK_MIN and bool(libc.malloc_trim(0))
