"""Rate limit of the streams a client resets on one HTTP/2 connection (rapid reset).

Rules: sans-IO and no clock: the caller passes the time. CVE-2023-44487 opens a stream and
resets it at once, in a loop: each costs the server a request (and an app call) while the
client never counts against max_concurrent_streams. A token bucket holding `limit` tokens,
refilled at `limit` per second, pays for each reset (or stream the server had to refuse);
an empty bucket means the connection is closed with GOAWAY ENHANCE_YOUR_CALM. Bursts up to
`limit` pass, so a browser cancelling a page's streams is never cut off.
"""

from __future__ import annotations


class ResetGuard:
    __slots__ = ("_last", "_limit", "_tokens")

    def __init__(self, limit: int, now: float) -> None:
        self._limit = float(limit)
        self._tokens = float(limit)
        self._last = now

    def allow(self, now: float) -> bool:
        """Count one reset at `now`; False once the client is over its rate."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._limit, self._tokens + elapsed * self._limit)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
