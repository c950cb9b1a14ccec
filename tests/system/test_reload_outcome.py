"""`serve reload` reports what the reload did, and `serve status` shows it afterwards:
what a systemd ExecReload= and a deploy script act on."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServe, run_serve, write_config

pytestmark = pytest.mark.system

GOOD_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


def test_reload_waits_for_the_outcome_and_status_shows_it(
    start_serve: StartServe, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "deployed.py"
    module.write_text(GOOD_APP.replace("VERSION", "v1"))
    config = write_config(
        tmp_path / "ops.yaml",
        app="deployed:app",
        app_dir=str(code),
        bind="127.0.0.1:0",
        workers=2,
        pidfile=str(tmp_path / "serve.pid"),
        graceful_timeout=5,
        boot_timeout=20,
    )
    serve = start_serve(config=config)

    module.write_text("def app(:\n")
    failed = run_serve("reload", "-c", str(config))
    assert failed.returncode == 1, failed.stdout
    assert failed.stdout == ""
    assert re.fullmatch(
        r"serve: error: reload failed: generation 2 failed to boot: .*SyntaxError.*; "
        r"generation 1 keeps serving\n",
        failed.stderr,
    ), failed.stderr
    assert httpx.get(serve.url, timeout=10).text == "v1"
    status = run_serve("status", "-c", str(config))
    assert status.returncode == 0, status.stderr
    line = status.stdout.splitlines()[1]
    assert re.fullmatch(
        r"last reload: failed \d+s ago \(SIGHUP, generation 2\): generation 2 failed to boot: "
        r".*SyntaxError.*",
        line,
    ), status.stdout

    module.write_text(GOOD_APP.replace("VERSION", "v2"))
    done = run_serve("reload", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"serve master {serve.pid} reloaded: generation 3 is ready\n"
    # Ready means serving: the answer comes from the new code at once.
    assert httpx.get(serve.url, timeout=10).text == "v2"
    status = run_serve("status", "-c", str(config))
    assert re.fullmatch(
        r"last reload: ok \d+s ago \(SIGHUP, generation 3\)", status.stdout.splitlines()[1]
    ), status.stdout


def test_a_reload_the_master_cannot_apply_fails_at_once(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "ops.yaml",
        app="master_apps:app",
        bind="127.0.0.1:0",
        workers=1,
        pidfile=str(tmp_path / "serve.pid"),
    )
    serve = start_serve(config=config)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        result = run_serve("reload", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"serve: error: reload failed: cannot bind 127.0.0.1:{port}: Address already in use; "
        "generation 1 keeps serving\n"
    )
    assert serve.proc.poll() is None
