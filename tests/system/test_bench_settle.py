"""The bench reads a server's memory once the server is done with a run (bench/servers.py
settle()), not while it still works through the tail wrk left it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.servers import RunningServer, ServerSpec

pytestmark = pytest.mark.system

# Busy for about a second of CPU, then marks the end and idles until stopped.
BUSY_THEN_IDLE = """
import sys, time
total = 0
for i in range(30_000_000):
    total += i
open(sys.argv[1], "w").close()
time.sleep(600)
"""


def test_settle_returns_once_the_server_stopped_using_cpu(tmp_path: Path) -> None:
    done = tmp_path / "done"
    spec = ServerSpec(
        "busy", (), lambda workers, port: [sys.executable, "-c", BUSY_THEN_IDLE, str(done)]
    )
    cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    with (tmp_path / "busy.log").open("wb") as log:
        server = RunningServer(spec, 1, cpus, tmp_path, log, protocol="h1")
        try:
            server.settle()
            assert done.exists()
        finally:
            server.stop()
