"""Memory per worker with and without preload: serve, uvicorn and gunicorn on a FastAPI app.

Run with `make bench-preload` (or `.bench-venv/bin/python -m bench.preload_memory`). Each
server runs bench/preload_app.py with WORKERS workers; once every worker answered, LOAD
requests on fresh connections go round them, then psutil reads each worker's USS (memory
no other process shares), PSS (shared pages split among their users) and RSS. The figures
are means over the workers, in MiB, medians over --runs; the table goes into the
"Preload memory" section of bench/RESULTS.md (bench/sections.py keeps it across `make
bench`). serve's preload template and every master are not workers: their own USS is shown
apart, since with preload the app's memory is paid once, in the template or master.

Rules: a server is started in its own session and stopped with killpg on that group only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import sections
from bench.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP = "bench.preload_app:app"
WORKERS = 4
LOAD = 400
READY_TIMEOUT_S = 60.0
MIB = 2**20
TITLE = "Preload memory"
_TEMPLATE_RE = re.compile(r"template (\d+) imported the app")


def _serve(port: int, preload: bool) -> list[str]:
    flags = ["--preload"] if preload else []
    return [
        str(BIN / "serve"), APP, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
        "--no-access-log", *flags,
    ]  # fmt: skip


def _uvicorn(port: int, preload: bool) -> list[str]:
    return [
        str(BIN / "uvicorn"), APP, "--workers", str(WORKERS), "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def _gunicorn(port: int, preload: bool) -> list[str]:
    flags = ["--preload"] if preload else []
    return [
        str(BIN / "gunicorn"), APP, "-k", "uvicorn_worker.UvicornWorker", "-w", str(WORKERS),
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", *flags,
    ]  # fmt: skip


Command = Callable[[int, bool], list[str]]
# (label, command builder, preload)
SERVERS: tuple[tuple[str, Command, bool], ...] = (
    ("serve", _serve, False),
    ("serve, preload", _serve, True),
    ("uvicorn", _uvicorn, False),
    ("gunicorn + uvicorn worker", _gunicorn, False),
    ("gunicorn + uvicorn worker, --preload", _gunicorn, True),
)


@dataclass(frozen=True)
class Sample:
    uss: float
    pss: float
    rss: float
    master_uss: float


def _answers(port: int, path: str = "/") -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _workers(master: psutil.Process, log: Path) -> list[psutil.Process]:
    templates = {int(pid) for pid in _TEMPLATE_RE.findall(log.read_text(errors="replace"))}
    # Direct children only: serve's template forks each worker through a short-lived
    # middle process, which must not count.
    children = master.children()
    return [
        child
        for child in children
        if child.pid not in templates and "resource_tracker" not in " ".join(child.cmdline())
    ]


def _measure(label: str, build: Command, preload: bool, log: Path) -> Sample:
    port = free_port()
    argv = build(port, preload)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        master = psutil.Process(proc.pid)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (_answers(port) and len(_workers(master, log)) == WORKERS):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        for number in range(LOAD):
            _answers(port, f"/m{number % 60}/{number}")
        workers = _workers(master, log)
        if len(workers) != WORKERS:
            raise RuntimeError(f"{label}: {len(workers)} workers after the load, not {WORKERS}")
        infos = [worker.memory_full_info() for worker in workers]
        return Sample(
            uss=statistics.mean(info.uss for info in infos) / MIB,
            pss=statistics.mean(info.pss for info in infos) / MIB,
            rss=statistics.mean(info.rss for info in infos) / MIB,
            master_uss=sum(
                p.memory_full_info().uss
                for p in [master, *master.children()]
                if p.pid not in {w.pid for w in workers}
            )
            / MIB,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _table(results: dict[str, list[Sample]]) -> str:
    def median(samples: list[Sample], name: str) -> float:
        return float(statistics.median(getattr(sample, name) for sample in samples))

    base = median(results["serve"], "uss")
    lines = [
        "| server | USS/worker MiB | PSS/worker MiB | RSS/worker MiB | USS vs serve | "
        "master (+ template) USS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for label, samples in results.items():
        uss = median(samples, "uss")
        lines.append(
            f"| {label} | {uss:.1f} | {median(samples, 'pss'):.1f} | "
            f"{median(samples, 'rss'):.1f} | {uss / base:.2f}x | "
            f"{median(samples, 'master_uss'):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    results: dict[str, list[Sample]] = {label: [] for label, _, _ in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for label, build, preload in SERVERS:
                sample = _measure(label, build, preload, Path(tmp) / f"{run}.log")
                results[label].append(sample)
                print(f"run {run + 1}: {label}: {sample}", flush=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (
        f"Generated by `bench/preload_memory.py` on {when} (`make bench-preload`): "
        f"{WORKERS} workers of bench/preload_app.py (FastAPI, pydantic, numpy, "
        f"{LOAD} requests spread over the workers), medians of {args.runs} runs, "
        f"Python {sys.version.split()[0]}."
    )
    table = _table(results)
    print(table)
    sections.update(args.out, TITLE, f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
