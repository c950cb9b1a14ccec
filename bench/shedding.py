"""`make bench`'s overload scenario: one serve worker at 3x the load it can carry, shedding
off and on; the latency of the requests it accepted, and how many it shed.

Rules:
- The app (`bench.shedding:app`) holds the event loop for BURN_MS per request, as CPU work
  does; one worker, pinned to one CPU when taskset exists, the client on another.
- Capacity is measured first, closed-loop (CAPACITY_CONNECTIONS clients, each sending its
  next request when the last is answered); the overload is then open-loop: requests start
  on a fixed schedule at LOAD_FACTOR times that rate, each on its own connection, whatever
  the server does, and a request's latency counts from its scheduled start (no coordinated
  omission). A request unanswered after CLIENT_TIMEOUT_S counts as a timeout.
- Writes bench/SHEDDING.md (a table per run) and prints it; no project import in the app.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BURN_MS = 10.0
LOAD_FACTOR = 3.0
CAPACITY_CONNECTIONS = 4
CLIENT_TIMEOUT_S = 30.0
# The last column leaves out the requests of the first second: shedding starts only once
# the wait has been over target for `interval`, and what queued meanwhile is served late.
STEADY_AFTER_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "SHEDDING.md"
BIN = Path(sys.executable).parent
_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
_BODY = b"burnt"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    end = time.perf_counter() + BURN_MS / 1000
    while time.perf_counter() < end:
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": _BODY})


@dataclass
class Outcome:
    # (seconds from the start of the load to the request's scheduled start, its latency)
    latencies_s: list[tuple[float, float]]
    shed: int
    failed: int
    sent: int

    def percentile(self, q: float, after_s: float = 0.0) -> float:
        ordered = sorted(latency for due, latency in self.latencies_s if due >= after_s)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_request(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_REQUEST)
        data = await reader.read()
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


async def capacity(port: int, seconds: float) -> float:
    """Requests/s the worker answers with CAPACITY_CONNECTIONS clients in a closed loop."""
    done = 0
    end = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < end:
            if await one_request(port) == 200:
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CAPACITY_CONNECTIONS)))
    return done / (time.monotonic() - began)


async def open_loop(port: int, rate: float, seconds: float) -> Outcome:
    outcome = Outcome([], 0, 0, 0)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def request(due: float) -> None:
        try:
            status = await asyncio.wait_for(one_request(port), CLIENT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            status = 0
        if status == 200:
            outcome.latencies_s.append((due - start, loop.time() - due))
        elif status == 503:
            outcome.shed += 1
        else:
            outcome.failed += 1

    tasks = []
    count = int(rate * seconds)
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(request(due)))
    outcome.sent = count
    await asyncio.gather(*tasks)
    return outcome


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(port: int, shedding: bool, tmp: Path) -> subprocess.Popen[bytes]:
    config = tmp / f"shedding-{int(shedding)}.yaml"
    config.write_text(
        f"app: bench.shedding:app\nbind: 127.0.0.1:{port}\nworkers: 1\naccess_log: false\n"
        f"log_level: warning\nbacklog: 4096\nshedding: {str(shedding).lower()}\n"
    )
    command = [str(BIN / "serve"), "-c", str(config)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return proc
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("serve did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def row(label: str, rate: float, o: Outcome) -> str:
    p50, p99 = (o.percentile(q) * 1000 for q in (0.5, 0.99))
    steady = o.percentile(0.99, STEADY_AFTER_S) * 1000
    return (
        f"| {label} | {rate:.0f} | {o.sent} | {len(o.latencies_s)} | {o.shed} | {o.failed} "
        f"| {p50:.0f} | {p99:.0f} | {steady:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="overload duration")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    tmp = Path(tempfile.mkdtemp(prefix="serve-shedding-"))
    rows = []
    rate = 0.0
    for shedding in (False, True):
        port = free_port()
        proc = start_serve(port, shedding, tmp)
        try:
            if not rate:
                rate = LOAD_FACTOR * asyncio.run(capacity(port, 3.0))
            outcome = asyncio.run(open_loop(port, rate, args.seconds))
        finally:
            stop(proc)
            (tmp / f"shedding-{int(shedding)}.yaml").unlink()
        label = "on (target 0.05 s, interval 0.5 s)" if shedding else "off"
        rows.append(row(label, rate, outcome))
    text = "\n".join(
        [
            "# Overload shedding (bench/shedding.py)",
            "",
            f"One worker whose app holds the loop {BURN_MS:g} ms per request, offered "
            f"{LOAD_FACTOR:g}x the rate it answers in a closed loop, open-loop for "
            f"{args.seconds:g} s, each request on a new connection; latency from each "
            "request's scheduled start. Run on "
            + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "",
            "| shedding | offered req/s | sent | answered 200 | shed 503 | failed "
            f"| p50 ms | p99 ms | p99 ms after {STEADY_AFTER_S:g} s |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    tmp.rmdir()
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
