"""Worker memory after a burst (server.allocator): the allocator's pad stays while a client
is connected, and the free heap goes back to the kernel once nothing is open."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.conftest import StartServe, wait_until

BURST_MIB = 24
# Well under BURST_MIB and well over what one small request moves the RSS by.
MARGIN_MIB = 8


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def test_a_burst_stays_resident_while_connected_and_goes_back_once_closed(
    start_serve: StartServe,
) -> None:
    server = start_serve("reliability_apps:app", "--workers", "1")
    [worker] = wait_until(server.worker_pids)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    assert get(conn, "/") == 200
    before = rss_mib(worker)
    assert get(conn, f"/burst?mib={BURST_MIB}") == 200
    # Kept for the next burst: the trim-and-grow cycle the pad exists to stop.
    assert rss_mib(worker) > before + BURST_MIB - MARGIN_MIB
    conn.close()
    wait_until(lambda: rss_mib(worker) < before + MARGIN_MIB)
