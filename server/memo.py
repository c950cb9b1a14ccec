"""A bounded memo that stops looking up while its lookups mostly miss.

Rules: no IO, no clock; one instance per kind of result, worker-wide (one event loop per
worker, so no locks). A value stored is what the caller's full computation returned for
that key, never a failure, so a hit is exactly what computing again would give. The table
is cleared when full rather than frozen: it follows what the traffic repeats now, and a
client cannot fill it once with junk to make every later lookup miss.

The guard: a lookup that misses costs hashing the key and, for a cacheable result, storing
it, for nothing. Traffic whose keys all differ (tracing ids, cookies in request heads, a
varying Content-Length in responses) would pay that on every request. So lookups are
judged by windows of `window`; a window with fewer than half hits pauses the memo for
`pause` keys (the caller then computes without hashing, storing nothing), and the next
window probes again. Each probe that fails again doubles the pause, up to `max_pause`:
traffic that never repeats pays for a probe window about once in 256 windows. The hot
path reads and counts down `paused` itself, without a call.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class AdaptiveMemo(Generic[K, V]):
    __slots__ = (
        "_hits", "_lookups", "_next_pause", "capacity", "max_pause", "pause", "paused", "table",
        "window",
    )  # fmt: skip

    def __init__(
        self, capacity: int = 256, window: int = 256, pause: int = 4096, max_pause: int = 65536
    ) -> None:
        self.capacity = capacity
        self.window = window
        self.pause = pause
        self.max_pause = max_pause
        self._next_pause = pause
        self.table: dict[K, V] = {}
        # Keys still to let through without a lookup; 0 while the memo is in use.
        self.paused = 0
        self._lookups = 0
        self._hits = 0

    def get(self, key: K) -> V | None:
        """The value stored for key, or None; counts the lookup toward the window."""
        value = self.table.get(key)
        self._lookups += 1
        if value is not None:
            self._hits += 1
        if self._lookups >= self.window:
            self._judge()
        return value

    def _judge(self) -> None:
        if 2 * self._hits < self._lookups:
            self.paused = self._next_pause
            self._next_pause = min(2 * self._next_pause, self.max_pause)
        else:
            self._next_pause = self.pause
        self._lookups = self._hits = 0

    def put(self, key: K, value: V) -> None:
        table = self.table
        if len(table) >= self.capacity:
            table.clear()
        table[key] = value
