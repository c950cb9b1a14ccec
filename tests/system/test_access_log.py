"""The buffered access log seen from outside: lines complete and in order, written when the
buffer fills, on drain, on USR1, on exit and before a blocked worker dies, and never split
or mixed when several workers write one file or one pipe."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    APPS_DIR,
    ROOT,
    ServeProcess,
    StartServe,
    raw_request,
    status_of,
    wait_until,
)
from tests.conftest import write_config as write_yaml

pytestmark = pytest.mark.system

APP = "asgi_apps:app"
# A whole access line, as the default text format writes it.
ACCESS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(?P<pid>\d+)\] INFO serve\.access: 127\.0\.0\.1:\d+ - "
    r'"GET (?P<path>/\S*) HTTP/1\.1" 200 \d+ \d+\.\dms$'
)
# Long enough that a line is far beyond what fits in the buffers' first write.
FILLER = "f" * 400


def config(tmp_path: Path, **keys: object) -> Path:
    # A flush interval no test outlives: every write a test sees comes from what it tests.
    # (The tests of mixed lines turn the lifespan off: the app's own prints of its startup
    # and shutdown are two writes each, which another worker's lines may land between.)
    keys = {"app": APP, "bind": "127.0.0.1:0", "access_log_flush_interval": 600, **keys}
    return write_yaml(tmp_path / "serve.yaml", **keys)


def access_paths(log: str) -> list[str]:
    return [m["path"] for m in map(ACCESS_LINE.match, log.splitlines()) if m]


def get_all(serve: ServeProcess, paths: list[str]) -> None:
    with httpx.Client(base_url=serve.url, timeout=10) as client:
        for path in paths:
            assert client.get(path).status_code == 200


def test_lines_wait_in_the_buffer_and_reach_the_log_on_exit_in_order(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve(config=config(tmp_path))
    paths = [f"/exit/{n:03d}" for n in range(60)]
    get_all(serve, paths)
    # 60 short lines are far from 64 KiB, and the interval is ten minutes away.
    assert access_paths(serve.log()) == []
    assert serve.stop() == 0
    assert access_paths(serve.log()) == paths
    log = serve.log()
    assert log.index("/exit/059") < log.index("serve stopped")


def test_a_full_buffer_is_written_at_once(start_serve: StartServe, tmp_path: Path) -> None:
    serve = start_serve(config=config(tmp_path, access_log_buffer_size="2KiB"))
    paths = [f"/full/{n:03d}/{FILLER}" for n in range(20)]
    get_all(serve, paths)
    # Each line is about 500 bytes: the buffer was written after every fifth at the latest.
    written = access_paths(serve.log())
    assert len(written) >= 15
    assert written == paths[: len(written)]
    assert serve.stop() == 0
    assert access_paths(serve.log()) == paths


def test_a_drain_writes_the_lines_while_a_request_still_runs(
    start_serve: StartServe, tmp_path: Path
) -> None:
    serve = start_serve(config=config(tmp_path))
    paths = [f"/before-drain/{n}" for n in range(5)]
    get_all(serve, paths)
    slow = threading.Thread(
        target=raw_request,
        args=(serve.port, b"GET /slow?s=20 HTTP/1.1\r\nHost: a\r\n\r\n", 30),
        daemon=True,
    )
    slow.start()
    serve.wait_log("slow request started")
    serve.signal(signal.SIGTERM)
    wait_until(lambda: access_paths(serve.log()) == paths)
    # The worker is still draining: the lines did not wait for its exit.
    assert serve.proc.poll() is None
    assert "/slow" not in serve.log().split("slow request started")[1]


def test_usr1_writes_the_buffered_lines_to_the_rotated_file(
    start_serve: StartServe, tmp_path: Path
) -> None:
    log_file = tmp_path / "serve.log"
    serve = start_serve(config=config(tmp_path, log_file=str(log_file)), wait=False)
    serve.log_path = log_file
    wait_until(log_file.exists)
    serve.wait_ready()
    before = ["/before-rotation/1", "/before-rotation/2"]
    get_all(serve, before)
    rotated = tmp_path / "serve.log.1"
    log_file.rename(rotated)
    serve.signal(signal.SIGUSR1)
    wait_until(lambda: access_paths(rotated.read_text()) == before)
    get_all(serve, ["/after-rotation"])
    assert serve.stop() == 0
    assert access_paths(log_file.read_text()) == ["/after-rotation"]
    assert access_paths(rotated.read_text()) == before


def test_a_worker_killed_for_a_blocked_loop_writes_its_lines_first(
    start_serve: StartServe, tmp_path: Path
) -> None:
    path = config(tmp_path, app="reliability_apps:app", worker_timeout=1)
    serve = start_serve(config=path)
    [worker] = serve.worker_pids()
    paths = [f"/?before-block={n}" for n in range(3)]
    get_all(serve, paths)
    blocker = threading.Thread(
        target=raw_request,
        args=(serve.port, b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n", 30),
        daemon=True,
    )
    blocker.start()
    serve.wait_log(f"worker {worker} killed by SIGABRT", timeout=30)
    log = serve.log()
    assert "Fatal Python error: Aborted" in log
    lines = [m for m in map(ACCESS_LINE.match, log.splitlines()) if m]
    assert [(m["pid"], m["path"]) for m in lines] == [(str(worker), p) for p in paths]


def hammer(port: int, prefix: str, count: int) -> None:
    for n in range(count):
        # A connection per request, so that both workers take a share.
        request = f"GET /{prefix}/{n:04d}/{FILLER} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        assert status_of(raw_request(port, request.encode())) == 200


def run_clients(port: int) -> set[str]:
    clients = [threading.Thread(target=hammer, args=(port, f"client{c}", 150)) for c in range(4)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return {f"/client{c}/{n:04d}/{FILLER}" for c in range(4) for n in range(150)}


def check_whole_lines(text: str, expected: set[str]) -> None:
    lines = [line for line in text.splitlines() if "serve.access" in line]
    matches = [ACCESS_LINE.match(line) for line in lines]
    assert all(matches), [line[:120] for line, m in zip(lines, matches, strict=True) if not m][:3]
    paths = [m["path"] for m in matches if m]
    assert sorted(paths) == sorted(expected)
    assert len({m["pid"] for m in matches if m}) == 2


@pytest.mark.parametrize("size", ["4KiB", "64KiB"])
def test_workers_writing_one_file_never_split_or_mix_lines(
    start_serve: StartServe, tmp_path: Path, size: str
) -> None:
    log_file = tmp_path / "serve.log"
    path = config(
        tmp_path, workers=2, lifespan="off", log_file=str(log_file), access_log_buffer_size=size
    )
    serve = start_serve(config=path, wait=False)
    serve.log_path = log_file
    wait_until(log_file.exists)
    serve.wait_ready()
    expected = run_clients(serve.port)
    assert serve.stop() == 0
    check_whole_lines(log_file.read_text(), expected)


def test_workers_writing_one_pipe_never_split_or_mix_lines(tmp_path: Path) -> None:
    # stderr on a pipe, as under systemd or docker: only writes up to PIPE_BUF are atomic.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "-c",
            str(config(tmp_path, workers=2, lifespan="off")),
        ],
        cwd=APPS_DIR,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out: list[bytes] = []
    assert proc.stdout is not None
    # A pipe of one page: a longer write has to wait for the reader, and then the kernel
    # lets another writer's bytes in between its parts.
    fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    reader = threading.Thread(target=out.extend, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        log = wait_until(
            lambda: (text := b"".join(out).decode()) and "serve ready" in text and text
        )
        port = re.search(r"Listening on http://127\.0\.0\.1:(\d+)", log)
        assert port is not None
        expected = run_clients(int(port.group(1)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        reader.join(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    check_whole_lines(b"".join(out).decode(), expected)
