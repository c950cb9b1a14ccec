"""Follow a serve log file from another thread, stamping each line with when it was seen.

The chaos and soak drivers learn what the master did (a worker killed, replaced, scaled)
from its log lines, and the chaos driver needs *when* to tell a request that died with
its worker from any other failure. The master writes a line right after each event, so the
time a line is first read (a poll every POLL_S) is the event's time within a few tens of
milliseconds; the drivers allow a second of slack on top.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

POLL_S = 0.02


class LogFollower:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        partial = b""
        with self._path.open("rb") as log:
            while not self._stop.wait(POLL_S):
                data = log.read()
                if not data:
                    continue
                now = time.monotonic()
                *complete, partial = (partial + data).split(b"\n")
                with self._lock:
                    self._lines += [(now, line.decode(errors="replace")) for line in complete]

    def mark(self) -> int:
        """A position: wait_for(..., since=mark) only looks at lines read after it."""
        with self._lock:
            return len(self._lines)

    def lines(self, since: int = 0) -> list[tuple[float, str]]:
        with self._lock:
            return self._lines[since:]

    def matches(self, pattern: str, since: int = 0) -> list[tuple[float, re.Match[str]]]:
        regex = re.compile(pattern)
        return [(t, m) for t, line in self.lines(since) if (m := regex.search(line))]

    def wait_for(
        self, pattern: str, since: int, timeout: float
    ) -> tuple[float, re.Match[str]] | None:
        """The first line after `since` matching `pattern`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matches(pattern, since)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)
