"""The benchmarked servers: their command lines, and starting, probing and stopping them.

Rules:
- Every server runs bench.app:app (or, for the framework scenarios, the FastAPI or Starlette
  app of bench/frameworks.py in its place) from the repository root, on 127.0.0.1 and a port chosen
  just before start, with access logs off and its fastest loop/parser (uvloop, httptools or
  its own native one), so each peer is measured at its best documented setting.
- A server that speaks HTTP/2 has a second command line for the h2 scenarios, launched as a
  separate server: HTTP/2 over cleartext with prior knowledge, and nothing else changed. A
  server without one is simply not run for them. Its readiness is then checked over h2c, as
  some peers answer nothing else on such a port.
- A server is started in its own session (`start_new_session`) and stopped with killpg on
  that group only: the harness never signals a process it did not start.
- Workers are the server's descendants (minus multiprocessing helper processes); a server
  with no descendants is its own single worker. The master, where there is one, is never
  counted in the RSS per worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import h2.exceptions
import psutil

from bench import h2client

BIN = Path(sys.executable).parent
# The raw app every command line names; the framework scenarios put theirs in its place.
APP = "bench.app:app"
READY_TIMEOUT_S = 30.0
WORKERS_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
# A server whose processes used no CPU over one window has finished what a run left it.
SETTLE_WINDOW_S = 0.1
SETTLE_TIMEOUT_S = 5.0
_POLL_S = 0.005
_HELPERS = ("resource_tracker", "semaphore_tracker", "forkserver")


def _serve(workers: int, port: int) -> list[str]:
    return [
        str(BIN / "serve"), APP, "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _serve_h2(workers: int, port: int) -> list[str]:
    # HTTP/2 is a config key of serve (`http2: {enabled: true}`); servers run from the root.
    return [*_serve(workers, port), "-c", "bench/serve-h2.yaml"]


def _serve_logging(fmt: str) -> Callable[[int, int], list[str]]:
    # As operators run it: the access log on (the default), on stderr, which the bench
    # sends to a file; log_level info, the default.
    def argv(workers: int, port: int) -> list[str]:
        argv = _serve(workers, port)
        return [*argv[: argv.index("--no-access-log")], "--log-format", fmt]

    return argv


def _uvicorn_logging(workers: int, port: int) -> list[str]:
    argv = _uvicorn(workers, port)
    start = argv.index("--no-access-log")
    return [*argv[:start], *argv[start + 3 :]]  # without --no-access-log --log-level warning


def _uvicorn(workers: int, port: int) -> list[str]:
    return [
        str(BIN / "uvicorn"), APP, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
        "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def _gunicorn(worker_class: list[str]) -> Callable[[int, int], list[str]]:
    def argv(workers: int, port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"), APP, *worker_class, "-w", str(workers),
            "-b", f"127.0.0.1:{port}", "--log-level", "warning",
        ]  # fmt: skip

    return argv


# gunicorn's ASGI worker speaks HTTP/2 since 25.0 and h2c since 26.2, both off by default;
# prior knowledge is honoured for peers in forwarded_allow_ips, 127.0.0.1 by default.
_GUNICORN_ASGI = ["-k", "asgi", "--asgi-loop", "uvloop"]
_GUNICORN_H2C = ["--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge"]


def _granian(workers: int, port: int) -> list[str]:
    return [
        str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--no-access-log",
        "--log-level", "warning", APP,
    ]  # fmt: skip


def _granian_h2(workers: int, port: int) -> list[str]:
    # Its default, `--http auto`, also serves h2c; `--http 2` is its HTTP/2-only mode.
    argv = _granian(workers, port)
    return [*argv[:-1], "--http", "2", argv[-1]]


def _hypercorn(workers: int, port: int) -> list[str]:
    return [
        str(BIN / "hypercorn"), APP, "-b", f"127.0.0.1:{port}",
        "-w", str(workers), "-k", "uvloop", "--log-level", "warning",
    ]  # fmt: skip


def _floor(workers: int, port: int) -> list[str]:
    return [
        sys.executable, "-m", "bench.floor", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
    ]  # fmt: skip


# What the access-log variants (serve and uvicorn with their default access log) run.
_LOGGED = frozenset({"plaintext"})


@dataclass(frozen=True)
class ServerSpec:
    """One contender: how to launch it with N workers on a port (over HTTP/1.1, and over
    HTTP/2 if it can), and which packages it is."""

    name: str
    packages: tuple[str, ...]
    argv: Callable[[int, int], list[str]]
    h2_argv: Callable[[int, int], list[str]] | None = None
    # Whether it can serve another app than bench.app:app (the floor cannot).
    any_app: bool = True
    # The only scenarios it runs (None: all): the access-log variants measure one shape.
    scenarios: frozenset[str] | None = None

    def runs(self, scenario: str) -> bool:
        return self.scenarios is None or scenario in self.scenarios

    def command(self, protocol: str) -> Callable[[int, int], list[str]] | None:
        """The launcher for "h1" or "h2" scenarios; None when the server cannot speak it."""
        return self.argv if protocol == "h1" else self.h2_argv


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("serve", ("serve",), _serve, _serve_h2),
        ServerSpec("uvicorn", ("uvicorn",), _uvicorn),
        ServerSpec("serve-log", ("serve",), _serve_logging("text"), scenarios=_LOGGED),
        ServerSpec("serve-log-json", ("serve",), _serve_logging("json"), scenarios=_LOGGED),
        ServerSpec("uvicorn-log", ("uvicorn",), _uvicorn_logging, scenarios=_LOGGED),
        ServerSpec(
            "gunicorn+uvicorn-worker",
            ("gunicorn", "uvicorn-worker", "uvicorn"),
            _gunicorn(["-k", "uvicorn_worker.UvicornWorker"]),
        ),
        ServerSpec(
            "gunicorn-asgi",
            ("gunicorn",),
            _gunicorn(_GUNICORN_ASGI),
            _gunicorn([*_GUNICORN_ASGI, *_GUNICORN_H2C]),
        ),
        ServerSpec("granian", ("granian",), _granian, _granian_h2),
        # hypercorn answers HTTP/1.1 and h2c (prior knowledge or Upgrade) on the same port.
        ServerSpec("hypercorn", ("hypercorn",), _hypercorn, _hypercorn),
        ServerSpec("floor", ("uvloop", "httptools"), _floor, any_app=False),
    )
}


def speakers(protocol: str, app: str = APP) -> list[str]:
    """Every known server that speaks `protocol` ("h1" or "h2") and can serve `app`, in the
    order of SERVERS."""
    return [
        name
        for name, spec in SERVERS.items()
        if spec.command(protocol) is not None and (app == APP or spec.any_app)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningServer:
    """A started server: its process group, port, protocol, start time and log file."""

    def __init__(
        self,
        spec: ServerSpec,
        workers: int,
        cpus: str,
        cwd: Path,
        log: IO[bytes],
        *,
        protocol: str,
        app: str = APP,
        ready_path: str = "/",
    ) -> None:
        argv = spec.command(protocol)
        if argv is None:
            raise ValueError(f"{spec.name} has no {protocol} command line")
        self.spec = spec
        self.protocol = protocol
        self.ready_path = ready_path
        self.workers = workers
        self.port = free_port()
        # Every command line names APP once; another app takes its place.
        args = [app if arg == APP else arg for arg in argv(workers, self.port)]
        self.command = ["taskset", "-c", cpus, *args]
        self._log = log
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> float:
        """Seconds from launch to the first 200 on `/`; raises if it never comes."""
        deadline = self.started_at + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with code {self.proc.returncode} before answering")
            if _answers(self.port, self.protocol, self.ready_path):
                return time.monotonic() - self.started_at
            time.sleep(_POLL_S)
        raise RuntimeError(f"no answer within {READY_TIMEOUT_S:.0f}s")

    def wait_workers(self) -> None:
        """Wait until all N workers exist, so the first measurement is not a partial fleet."""
        deadline = time.monotonic() + WORKERS_TIMEOUT_S
        while len(self.worker_processes()) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.worker_processes())} workers came up")
            time.sleep(0.05)

    def worker_processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            children = root.children(recursive=True)
            workers = [p for p in children if not _is_helper(p)]
        except psutil.NoSuchProcess:
            return []
        return workers or [root]

    def settle(self) -> None:
        """Wait until the server's processes use no CPU for SETTLE_WINDOW_S (SETTLE_TIMEOUT_S
        at most). When wrk exits, a server still has its last requests in flight and the
        connections to close, for a few hundred ms at 256 connections: memory read then is
        a snapshot of that tail, whose length and frees differ from server to server, not
        what the run left."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        used = self._cpu_s()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_WINDOW_S)
            used, before = self._cpu_s(), used
            if used == before:
                return

    def _cpu_s(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss_per_worker_mib(self) -> float:
        sizes: list[int] = []
        for proc in self.worker_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes.append(proc.memory_info().rss)
        return sum(sizes) / len(sizes) / 2**20 if sizes else 0.0

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL it if it is still there after the grace period."""
        tree = self.processes()
        # The leader is not reaped before wait() returns, so its group id cannot be reused
        # by another process while we signal it.
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # A worker can outlive its master; psutil refuses to kill a pid that was reused.
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._log.close()

    def processes(self) -> list[psutil.Process]:
        """The whole tree: master (if any), workers and helpers."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _is_helper(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    return any(name in cmdline for name in _HELPERS)


def _answers(port: int, protocol: str, path: str) -> bool:
    if protocol == "h2":
        try:
            return h2client.get(port, path, timeout_s=1.0).status == 200
        except (OSError, h2.exceptions.ProtocolError):
            return False
    request = b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False
