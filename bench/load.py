"""The load side: scenarios, a correctness probe per scenario, and wrk runs.

Rules:
- A scenario is one request shape; wrk sends it unchanged for the whole run (bench/scenario.lua
  builds it once), so the load generator costs the same against every server.
- Before a server is measured on a scenario, one request checks that the answer is right
  (status and exact body length); a fast wrong answer must not count as speed.
- wrk's own summary line (BENCH-JSON, printed by scenario.lua) is the only figure we read;
  errors are non-2xx/3xx answers plus connect, read, write and timeout socket errors.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.app import DOWNLOAD, JSON_DOC, PLAINTEXT, STREAM_CHUNK, STREAM_CHUNKS

LUA = Path(__file__).resolve().parent / "scenario.lua"
ECHO_BYTES = 64 * 1024
_JSON_BYTES = len(json.dumps(JSON_DOC, separators=(",", ":")))
_MARK = "BENCH-JSON "


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    method: str
    body_bytes: int
    close: bool
    expected_bytes: int
    meaning: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "plaintext", "/", "GET", 0, False, len(PLAINTEXT),
            "GET / answered with 13 bytes of text, keep-alive",
        ),
        Scenario(
            "json", "/json", "GET", 0, False, _JSON_BYTES,
            "GET /json answered with a small JSON object serialised per request",
        ),
        Scenario(
            "echo64k", "/echo", "POST", ECHO_BYTES, False, ECHO_BYTES,
            "POST /echo with a 64 KiB body, which the app reads and sends back",
        ),
        Scenario(
            "stream", "/stream", "GET", 0, False, STREAM_CHUNKS * len(STREAM_CHUNK),
            "GET /stream: ten 1 KiB body messages, no content-length (chunked)",
        ),
        Scenario(
            "download1m", "/download", "GET", 0, False, len(DOWNLOAD),
            "GET /download answered with a 1 MiB body",
        ),
        Scenario(
            "close", "/", "GET", 0, True, len(PLAINTEXT),
            "GET / with `Connection: close`: one new TCP connection per request",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def probe(port: int, scenario: Scenario) -> str | None:
    """One real request; returns what is wrong with the answer, or None when it is right."""
    body = b"a" * scenario.body_bytes if scenario.body_bytes else None
    headers = {"Connection": "close"} if scenario.close else {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(scenario.method, scenario.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if response.status != 200:
        return f"status {response.status}"
    if len(data) != scenario.expected_bytes:
        return f"body of {len(data)} bytes, expected {scenario.expected_bytes}"
    if body is not None and data != body:
        return "echoed body differs from the request body"
    return None


def wrk_command(
    port: int, scenario: Scenario, concurrency: int, duration_s: int, cpus: str
) -> list[str]:
    """One wrk thread: on one CPU a second thread would only compete with the first."""
    return [
        "taskset", "-c", cpus, "wrk", "-t", "1", "-c", str(concurrency),
        "-d", f"{duration_s}s", "--latency", "-s", str(LUA),
        f"http://127.0.0.1:{port}{scenario.path}", "--",
        scenario.method, str(scenario.body_bytes), "close" if scenario.close else "keep-alive",
    ]  # fmt: skip


def run_wrk(command: list[str], duration_s: int) -> WrkResult:
    """Run wrk to completion and read its summary; raises if wrk fails or prints none."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            seconds = data["duration_us"] / 1e6
            errors = sum(data[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
            return WrkResult(
                requests=data["requests"],
                rps=data["requests"] / seconds if seconds else 0.0,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=errors,
            )
    raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout[-300:]}")
