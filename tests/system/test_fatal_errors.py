"""An error that ends the master reaches the terminal (and so the journal) even when the
log goes to `log_file`: the operator who started serve sees why it stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import APPS_DIR, ROOT

pytestmark = pytest.mark.system


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "serve.supervisor", *args],
        cwd=APPS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_busy_port_is_on_stderr_with_a_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "serve.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = serve(
            "master_apps:app", "--bind", f"127.0.0.1:{port}", "--log-file", str(log_file)
        )
    assert result.returncode == 2
    line = f"cannot bind 127.0.0.1:{port}: Address already in use"
    assert result.stderr == f"serve: error: {line}\n"
    assert line in log_file.read_text()


def test_an_app_that_cannot_boot_is_on_stderr_with_a_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "serve.log"
    result = serve("master_broken_app:app", "--bind", "127.0.0.1:0", "--log-file", str(log_file))
    assert result.returncode == 4
    assert result.stderr.startswith(
        "serve: error: workers cannot boot (exit code 4): cannot import module "
        "'master_broken_app' for app 'master_broken_app:app': "
    )
    assert "RuntimeError: master_broken_app refuses to import" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "failed to boot" in log_file.read_text()


def test_a_preload_template_that_cannot_import_the_app_is_on_stderr_with_a_log_file(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "serve.log"
    app = "master_broken_app:app"
    result = serve(app, "--preload", "--bind", "127.0.0.1:0", "--log-file", str(log_file))
    assert result.returncode == 4
    assert result.stderr.startswith(
        "serve: error: the app cannot be loaded (exit code 4): cannot import module "
        "'master_broken_app' for app 'master_broken_app:app': "
    )
    assert "RuntimeError: master_broken_app refuses to import" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "cannot load the app" in log_file.read_text()


def test_without_a_log_file_the_error_is_not_printed_twice(tmp_path: Path) -> None:
    result = serve("master_broken_app:app", "--bind", "127.0.0.1:0")
    assert result.returncode == 4
    assert result.stderr.count("workers cannot boot (exit code 4)") == 1
    assert "serve: error:" not in result.stderr
