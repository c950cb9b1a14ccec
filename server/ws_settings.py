"""WebSocket settings of one worker.

Rules: a frozen value with no IO and no heavy imports, so that server.settings can hold one
(WorkerSettings.ws) and the master can build it without loading the WebSocket machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# `auto` and `wsproto` mean the same: wsproto is the one implementation (and a dependency).
WSMode = Literal["auto", "wsproto", "none"]
WEBSOCKET_UPGRADES = frozenset((b"websocket",))


@dataclass(frozen=True, slots=True)
class WSSettings:
    mode: WSMode = "auto"
    # Largest message accepted, in bytes after decompression (characters for text); a larger
    # one closes the connection with 1009.
    max_size: int = 16 * 1024 * 1024
    # None disables the keepalive ping (and with it the pong timeout).
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    per_message_deflate: bool = True

    @property
    def upgrades(self) -> frozenset[bytes]:
        """The Upgrade tokens the HTTP/1.1 parser hands over instead of serving as HTTP."""
        return frozenset() if self.mode == "none" else WEBSOCKET_UPGRADES
