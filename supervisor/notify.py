"""sd_notify without libsystemd: one datagram per state change to $NOTIFY_SOCKET.

Rules:
- The protocol is newline-separated KEY=VALUE lines in one AF_UNIX datagram
  (sd_notify(3)); a NOTIFY_SOCKET starting with "@" names an abstract socket, whose
  address starts with a NUL byte instead.
- Notifying never raises and never blocks: systemd may be gone, the socket full or the
  variable wrong, and none of that may stop the master. A failure is logged at debug level.
- Each message opens its own socket: messages are rare (state changes, a watchdog ping
  every few seconds), and no descriptor is left open for forked workers to inherit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger("serve.master")

NOTIFY_SOCKET_VAR = "NOTIFY_SOCKET"


class Notifier:
    """Sends READY/RELOADING/STOPPING/STATUS/WATCHDOG/MAINPID to the service manager."""

    def __init__(
        self,
        address: str | bytes,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Notifier | None:
        """A Notifier for $NOTIFY_SOCKET, or None when the variable is unset or unusable."""
        raw = environ.get(NOTIFY_SOCKET_VAR, "")
        if not raw:
            return None
        address: str | bytes
        if raw.startswith("@"):
            address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            address = raw
        else:
            logger.warning(
                "ignoring %s=%r: only unix socket paths are supported", NOTIFY_SOCKET_VAR, raw
            )
            return None
        return cls(
            address,
            _positive_int(environ.get("WATCHDOG_USEC")),
            _positive_int(environ.get("WATCHDOG_PID")),
        )

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between two WATCHDOG=1 pings (half the manager's timeout), or None."""
        if self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def reloading(self) -> None:
        # systemd (Type=notify-reload) needs the monotonic time of the reload start.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def mainpid(self, pid: int) -> None:
        self._send(f"MAINPID={pid}")

    def _send(self, message: str) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            logger.debug("sd_notify %r failed: %s", message.partition("\n")[0], exc)


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    value = int(text)
    return value if value > 0 else None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment inside the datagram.
    return " ".join(text.split("\n"))
