"""`serve check` tries what a start would do, without serving: it imports the app (in a
child process, within boot_timeout), applies log_config, and tests each bind it can test
without taking the port. What passes check starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_serve

pytestmark = pytest.mark.system


def test_an_app_that_does_not_import_fails_check_with_exit_4(tmp_path: Path) -> None:
    result = run_serve("check", "nosuchmodule:app", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == (
        "serve: error: app: cannot import module 'nosuchmodule' for app 'nosuchmodule:app': "
        "No module named 'nosuchmodule'\n"
    )
    assert result.stdout == ""


def test_an_app_whose_import_hangs_fails_check_after_boot_timeout(tmp_path: Path) -> None:
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(60)\napp = None\n")
    (tmp_path / "serve.yaml").write_text("app: hangs:app\nboot_timeout: 1\n")
    result = run_serve("check", "-c", "serve.yaml", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == (
        "serve: error: app: importing 'hangs:app' took longer than boot_timeout (1s)\n"
    )


def test_a_log_config_that_dictconfig_rejects_fails_check(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("async def app(scope, receive, send): pass\n")
    (tmp_path / "logging.yaml").write_text(
        "version: 1\nformatters:\n  custom:\n    (): nosuchpackage.Formatter\n"
        "handlers:\n  out:\n    class: logging.StreamHandler\n    formatter: custom\n"
        "root:\n  handlers: [out]\n"
    )
    (tmp_path / "serve.yaml").write_text("app: app:app\nlog_config: logging.yaml\n")
    result = run_serve("check", "-c", "serve.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "serve: error: log_config logging.yaml: Unable to configure formatter 'custom'"
    ), result.stderr
    assert "nosuchpackage" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_unix_socket_in_a_missing_directory_fails_check(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("async def app(scope, receive, send): pass\n")
    socket_path = tmp_path / "missing" / "serve.sock"
    result = run_serve("check", "app:app", "--bind", f"unix:{socket_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"serve: error: bind: cannot bind unix:{socket_path}: directory "
        f"{socket_path.parent} does not exist\n"
    )


def test_a_host_that_is_not_ours_fails_check(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("async def app(scope, receive, send): pass\n")
    # TEST-NET-1 (RFC 5737): never an address of this machine.
    result = run_serve("check", "app:app", "--bind", "192.0.2.1:8000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "serve: error: bind: cannot bind 192.0.2.1:8000: Cannot assign requested address\n"
    )


def test_a_port_in_use_passes_check(tmp_path: Path) -> None:
    # `serve check` runs beside the live server before a reload: its port is taken.
    import socket

    (tmp_path / "app.py").write_text("async def app(scope, receive, send): pass\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("check", "app:app", "--bind", f"127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
