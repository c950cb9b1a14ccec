"""Shared test helpers: run real `serve` processes on ephemeral loopback ports.

Every server a test starts binds 127.0.0.1:0; the master logs the real address
("Listening on http://127.0.0.1:PORT") and "serve ready" once the first generation is up,
and the helpers wait on those lines instead of sleeping. Processes are started in their own
session and the whole group is killed at teardown, so a failed test leaks nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = Path(__file__).resolve().parent / "apps"
_LISTEN_RE = re.compile(r"Listening on https?://([\d.]+|\[[0-9a-f:]+\]):(\d+)")


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def write_config(path: Path, **keys: Any) -> Path:
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


class ServeProcess:
    """One `serve` master started as a subprocess, with its combined log in a file."""

    def __init__(self, command: list[str], cwd: Path, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 15.0, count: int = 1) -> str:
        """Wait until the log holds `pattern` (a regex) at least `count` times."""

        def found() -> bool:
            if self.proc.poll() is not None and len(re.findall(pattern, self.log())) < count:
                raise AssertionError(
                    f"serve exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                    + self.log()
                )
            return len(re.findall(pattern, self.log())) >= count

        wait_until(found, timeout)
        return self.log()

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        log = self.wait_log("serve ready", timeout)
        match = _LISTEN_RE.search(log)
        if match:
            self.port = int(match.group(2))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def worker_pids(self) -> list[int]:
        """Child pids of the master, read from /proc (no psutil in the assertion path)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except FileNotFoundError:
            return []

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log_file.close()


def serve_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without SERVE_* variables, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def run_serve(
    *args: str, cwd: Path = APPS_DIR, env: dict[str, str] | None = None, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """Run `serve ARGS` to its end (check, reload, stop, status, a start that fails) and
    return its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "serve", *args],
        cwd=cwd,
        env=serve_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


StartServe = Callable[..., ServeProcess]


def launch(
    args: list[str],
    log_path: Path,
    *,
    cwd: Path = APPS_DIR,
    env: dict[str, str] | None = None,
    script: Path | None = None,
) -> ServeProcess:
    """Start `python -m serve ARGS` (or `python SCRIPT ARGS`) with the repo importable
    and no SERVE_* variables leaking in from the caller's environment."""
    full_env = serve_env({"PYTHONUNBUFFERED": "1", **(env or {})})
    entry = [str(script)] if script is not None else ["-m", "serve"]
    return ServeProcess([sys.executable, *entry, *args], cwd, log_path, full_env)


@pytest.fixture(scope="module")
def asgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for a whole module, serving tests/apps/asgi_apps.py (read-only tests)."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = launch(["asgi_apps:app", "--bind", "127.0.0.1:0"], log_path)
    try:
        yield proc.wait_ready()
    finally:
        proc.kill_group()


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    """Start `serve ARGS...`; by default in tests/apps with bind 127.0.0.1:0 and waits ready.

    Usage: start_serve("hello:app", "--workers", "2") or start_serve(config=path).
    """
    started: list[ServeProcess] = []

    def start(
        *args: str,
        config: Path | None = None,
        wait: bool = True,
        bind: bool = True,
        cwd: Path = APPS_DIR,
        env: dict[str, str] | None = None,
    ) -> ServeProcess:
        argv = list(args)
        if config is not None:
            argv += ["-c", str(config)]
        if bind and config is None:
            argv += ["--bind", "127.0.0.1:0"]
        proc = launch(argv, tmp_path / f"serve-{len(started)}.log", cwd=cwd, env=env)
        started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.kill_group()


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` on a fresh connection; return all the server sent until it closed.

    The client does not half-close: like the ASGI servers we learn from, serve takes a
    client's EOF as the client going away, so the request must ask for the close itself
    (`Connection: close`, HTTP/1.0, or an error the server answers by closing).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    """Status code of the first response in `response` (0 when nothing came back)."""
    if not response:
        return 0
    return int(response.split(b" ", 2)[1])
