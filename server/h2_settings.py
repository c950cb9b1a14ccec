"""HTTP/2 settings of one worker.

Rules: a frozen value with no IO and no heavy imports: server.settings holds one
(WorkerSettings.http2) and the master builds it without importing h2, which a worker loads
only when it gets its first HTTP/2 connection.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 9113 section 6.5.2: a flow-control window is at most 2^31 - 1 bytes.
MAX_WINDOW_SIZE = 2**31 - 1


@dataclass(frozen=True, slots=True)
class H2Settings:
    # Off: ALPN offers http/1.1 only, and cleartext connections are HTTP/1.1.
    enabled: bool = False
    # Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    max_concurrent_streams: int = 100
    # Request body bytes a client may send on one stream before the app reads them.
    initial_window_size: int = 256 * 1024
    # Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 6.5.2).
    max_header_list_size: int = 65536

    @property
    def connection_window_size(self) -> int:
        """Unread request body bytes all streams of one connection may hold together."""
        return min(4 * self.initial_window_size, MAX_WINDOW_SIZE)

    @property
    def resets_per_second(self) -> int:
        """Streams a client may reset (or have refused) per second before the connection is
        closed with ENHANCE_YOUR_CALM (CVE-2023-44487, rapid reset)."""
        return max(100, 2 * self.max_concurrent_streams)
