"""The load side: scenarios, a correctness probe per scenario, and wrk or h2load runs.

Rules:
- A scenario is one request shape; the load generator sends it unchanged for the whole run
  (bench/scenario.lua builds it once for wrk; h2load encodes it once), so the load costs the
  same against every server.
- A scenario speaks one protocol: "h1" scenarios run under wrk over HTTP/1.1, "h2" scenarios
  under h2load over HTTP/2 cleartext with prior knowledge (h2c, RFC 9113 section 3.3). For
  h2 the concurrency is the number of requests in flight, as for wrk: concurrency /
  H2_STREAMS connections, each with H2_STREAMS concurrent streams.
- Before a server is measured on a scenario, one request checks that the answer is right
  (status and exact body length), over the scenario's protocol; a fast wrong answer must not
  count as speed.
- wrk's own summary line (BENCH-JSON, printed by scenario.lua) is the only figure we read;
  errors are non-2xx/3xx answers plus connect, read, write and timeout socket errors.
- h2load's summary gives requests/s and its "failed" count (non-2xx/3xx answers plus
  streams and connections that errored or timed out); it prints no percentiles, so p50 and
  p99 come from its per-request log (`--log-file`), over the requests that got an answer.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import h2.exceptions

from bench import h2client
from bench.app import DOWNLOAD, JSON_DOC, PLAINTEXT, STREAM_CHUNK, STREAM_CHUNKS
from bench.servers import APP

LUA = Path(__file__).resolve().parent / "scenario.lua"
ECHO_BYTES = 64 * 1024
_JSON_BYTES = len(json.dumps(JSON_DOC, separators=(",", ":")))
_MARK = "BENCH-JSON "
# Streams each h2load connection keeps in flight: enough to exercise multiplexing, few enough
# that c64 still opens 16 connections, which spread over the workers of a shared socket.
H2_STREAMS = 4
_H2LOAD_RATE = re.compile(r"^finished in .*?, ([0-9.]+) req/s", re.MULTILINE)
_H2LOAD_COUNTS = re.compile(r"^requests: .*? (\d+) done, \d+ succeeded, (\d+) failed", re.MULTILINE)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    method: str
    body_bytes: int
    close: bool
    expected_bytes: int
    meaning: str
    protocol: str = "h1"
    # The app every server runs for it, and the path that tells a started one is ready.
    app: str = APP
    ready_path: str = "/"
    # The request body: `body_bytes` of "a", or a JSON object {"data": "aaa..."} that long.
    json_body: bool = False

    def body(self) -> bytes | None:
        if not self.body_bytes:
            return None
        if self.json_body:
            return b'{"data":"%s"}' % (b"a" * (self.body_bytes - len(b'{"data":""}')))
        return b"a" * self.body_bytes


def _framework_scenarios(prefix: str, app: str, framework: str) -> list[Scenario]:
    """The four request shapes of bench/frameworks.py, against its app of `framework`."""
    # Imported here: the framework scenarios need fastapi in the bench venv, the others not.
    from bench.frameworks import ITEM_BYTES, ITEM_PATH, POST_ANSWER_BYTES, POST_BYTES

    item = f"an `async def` JSON route with a path parameter and a query ({framework})"
    shapes = [
        ("", ITEM_PATH, f"GET {ITEM_PATH}: {item}"),
        ("-sync", f"/sync{ITEM_PATH}", f"the same route as a sync `def` ({framework})"),
        (
            "-mw",
            f"/mw{ITEM_PATH}",
            f"the async route below a mount with a middleware ({framework})",
        ),
    ]
    scenarios = [
        Scenario(
            f"{prefix}{suffix}",
            path,
            "GET",
            0,
            False,
            ITEM_BYTES,
            meaning,
            app=app,
            ready_path=ITEM_PATH,
        )
        for suffix, path, meaning in shapes
    ]
    scenarios.append(
        Scenario(
            f"{prefix}-post100k",
            "/upload",
            "POST",
            POST_BYTES,
            False,
            POST_ANSWER_BYTES,
            f"POST /upload with a 100 KiB JSON body that the app parses ({framework})",
            app=app,
            ready_path=ITEM_PATH,
            json_body=True,
        )
    )
    return scenarios


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
        Scenario(
            "h2", "/", "GET", 0, False, len(PLAINTEXT),
            f"GET / over HTTP/2 cleartext (h2c, prior knowledge) under h2load: c streams in "
            f"flight, c/{H2_STREAMS} connections x {H2_STREAMS} concurrent streams",
            protocol="h2",
        ),
        *_framework_scenarios("fastapi", "bench.frameworks:fastapi_app", "FastAPI"),
        *_framework_scenarios("starlette", "bench.frameworks:starlette_app", "Starlette"),
    )
}  # fmt: skip


def group_of(scenario: str) -> tuple[str, str]:
    """A scenario's launch group: its protocol and the app every server runs for it."""
    return SCENARIOS[scenario].protocol, SCENARIOS[scenario].app


@dataclass(frozen=True)
class LoadResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_load(
    port: int, scenario: Scenario, concurrency: int, duration_s: int, cpus: str, *, log: Path
) -> LoadResult:
    """One run of the scenario's load generator, to completion; h2load's latencies go to `log`."""
    if scenario.protocol == "h2":
        command = h2load_command(port, scenario, concurrency, duration_s, cpus, log=log)
        return run_h2load(command, duration_s, log)
    return run_wrk(wrk_command(port, scenario, concurrency, duration_s, cpus), duration_s)


def probe(port: int, scenario: Scenario) -> str | None:
    """One real request; returns what is wrong with the answer, or None when it is right."""
    if scenario.protocol == "h2":
        return _probe_h2(port, scenario)
    body = scenario.body()
    headers = {"Connection": "close"} if scenario.close else {}
    if scenario.json_body:
        headers["Content-Type"] = "application/json"
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
    if body is not None and not scenario.json_body and data != body:
        return "echoed body differs from the request body"
    return None


def _probe_h2(port: int, scenario: Scenario) -> str | None:
    try:
        answer = h2client.get(port, scenario.path, timeout_s=10)
    except (OSError, h2.exceptions.ProtocolError) as exc:
        return f"HTTP/2: {type(exc).__name__}: {exc}"
    if answer.status != 200:
        return f"HTTP/2: status {answer.status}"
    if len(answer.body) != scenario.expected_bytes:
        return f"HTTP/2: body of {len(answer.body)} bytes, expected {scenario.expected_bytes}"
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
        "json" if scenario.json_body else "bytes",
    ]  # fmt: skip


def run_wrk(command: list[str], duration_s: int) -> LoadResult:
    """Run wrk to completion and read its summary; raises if wrk fails or prints none."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            seconds = data["duration_us"] / 1e6
            errors = sum(data[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
            return LoadResult(
                requests=data["requests"],
                rps=data["requests"] / seconds if seconds else 0.0,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=errors,
            )
    raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout[-300:]}")


def h2load_command(
    port: int, scenario: Scenario, concurrency: int, duration_s: int, cpus: str, *, log: Path
) -> list[str]:
    """One h2load thread, like wrk; the run is timed (-D), the latencies go to `log`."""
    connections = max(1, math.ceil(concurrency / H2_STREAMS))
    return [
        "taskset", "-c", cpus, "h2load", "-t", "1", "-c", str(connections),
        "-m", str(H2_STREAMS), "-D", str(duration_s), "--log-file", str(log),
        f"http://127.0.0.1:{port}{scenario.path}",
    ]  # fmt: skip


def run_h2load(command: list[str], duration_s: int, latency_log: Path) -> LoadResult:
    """Run h2load to completion and read its summary and per-request log."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    rate = _H2LOAD_RATE.search(done.stdout)
    counts = _H2LOAD_COUNTS.search(done.stdout)
    if done.returncode != 0 or rate is None or counts is None:
        tail = done.stderr.strip() or done.stdout[-300:]
        raise RuntimeError(f"h2load exited {done.returncode}: {tail}")
    latencies = _answered_latencies_us(latency_log.read_text())
    latency_log.unlink()
    return LoadResult(
        requests=int(counts[1]),
        rps=float(rate[1]),
        p50_ms=_percentile(latencies, 50) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
        errors=int(counts[2]),
    )


def _answered_latencies_us(log: str) -> list[int]:
    """Microseconds per request from h2load's log (start, status, elapsed); -1 is no answer."""
    rows = (line.split("\t") for line in log.splitlines() if line)
    return sorted(int(row[2]) for row in rows if row[1] != "-1")


def _percentile(ordered: list[int], pct: int) -> float:
    """The nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    return float(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)])
