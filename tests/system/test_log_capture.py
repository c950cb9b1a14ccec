"""Logs from a real master: log_file also takes what workers write to stderr (a blocked
worker's stack dump among it), USR1 moves that too, and log_config replaces the built-in
setup in the master and in every worker."""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config
from tests.system.test_supervisor_health import hang_line

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"


def follow(serve: ServeProcess, log_file: Path) -> ServeProcess:
    """Read the master's lines (its port, its readiness) where they go: `log_file`."""
    wait_until(log_file.exists)
    serve.log_path = log_file
    return serve.wait_ready()


def test_a_blocked_workers_stack_dump_goes_to_the_log_file(
    start_serve: StartServe, tmp_path: Path
) -> None:
    log_file = tmp_path / "serve.log"
    config = write_config(
        tmp_path / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        worker_timeout=2,
        log_file=str(log_file),
    )
    serve = follow(start_serve(config=config, wait=False), log_file)
    [stuck] = serve.worker_pids()
    with socket.create_connection(("127.0.0.1", serve.port), timeout=30) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        serve.wait_log(f"worker {stuck} killed by SIGABRT", timeout=30)
    log = log_file.read_text()
    # The app's print and faulthandler's dump, both written to descriptor 2 of the worker.
    assert f"app: worker {stuck} blocks its loop" in log
    assert "Fatal Python error: Aborted" in log
    assert f'supervisor_apps.py", line {hang_line()} in hang' in log
    assert log.index("blocks its loop") < log.index("Fatal Python error: Aborted")
    assert serve.stop() == 0
    # Nothing went to the process's own stderr (the file conftest collects it in).
    outside = (tmp_path / "serve-0.log").read_text()
    assert "Fatal Python error" not in outside
    assert "blocks its loop" not in outside


def test_usr1_moves_the_captured_stderr_to_the_new_file(
    start_serve: StartServe, tmp_path: Path
) -> None:
    log_file = tmp_path / "serve.log"
    config = write_config(
        tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", log_file=str(log_file)
    )
    serve = follow(start_serve(config=config, wait=False), log_file)
    log_file.rename(tmp_path / "serve.log.1")
    serve.signal(signal.SIGUSR1)
    wait_until(lambda: log_file.exists() and "log files reopened" in log_file.read_text())
    # The worker reopens on the USR1 the master forwards; it may still be on its way.
    wait_until(lambda: _slow_print_lands_in(serve.url, log_file), timeout=20)
    assert "slow request started" not in (tmp_path / "serve.log.1").read_text()
    assert serve.stop() == 0


def _slow_print_lands_in(url: str, log_file: Path) -> bool:
    before = log_file.read_text().count("app: slow request started")
    assert httpx.get(url + "/slow", timeout=10).status_code == 200
    return log_file.read_text().count("app: slow request started") > before


def test_log_config_replaces_the_built_in_setup_in_master_and_workers(
    start_serve: StartServe, tmp_path: Path
) -> None:
    out = tmp_path / "custom.log"
    logging_config = {
        "version": 1,
        "formatters": {"mine": {"format": "MINE [%(process)d] %(name)s | %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "mine"}
        },
        "loggers": {"serve": {"level": "INFO", "handlers": ["file"], "propagate": False}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(logging_config))
    config = write_config(
        tmp_path / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        workers=2,
        log_config=str(tmp_path / "logging.json"),
    )
    serve = follow(start_serve(config=config, wait=False), out)
    master = serve.pid
    worker = int(httpx.get(serve.url + "/", timeout=10).text)
    wait_until(lambda: f"MINE [{worker}] serve.access | 127.0.0.1" in out.read_text())
    log = out.read_text()
    assert f"MINE [{master}] serve.master | serve ready (2 workers)" in log
    assert re.search(rf"MINE \[{worker}\] serve \| Application startup complete", log)
    assert serve.stop() == 0
    # The built-in handler is not there: nothing of ours on the process's stderr.
    assert "serve ready" not in (tmp_path / "serve-0.log").read_text()


def test_a_broken_log_config_is_a_config_error_at_start(
    start_serve: StartServe, tmp_path: Path
) -> None:
    (tmp_path / "logging.yaml").write_text("version: 1\nhandlers: {x: {class: no.such.Class}}\n")
    config = write_config(
        tmp_path / "serve.yaml",
        app=APP,
        bind="127.0.0.1:0",
        log_config=str(tmp_path / "logging.yaml"),
    )
    serve = start_serve(config=config, wait=False)
    assert serve.wait_exit() == 2
    assert re.search(r"log_config .*logging\.yaml: Unable to configure handler 'x'", serve.log())
