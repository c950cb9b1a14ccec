"""supervisor.run(): the programmatic start behaves like the CLI, app objects included."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import launch

pytestmark = pytest.mark.system

SCRIPT = """
import sys

import supervisor


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from an object"})


if __name__ == "__main__":
    sys.exit(supervisor.run(app, host="127.0.0.1", port=0, workers=2, access_log=False))
"""


def test_run_with_an_app_object_and_two_workers(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(SCRIPT)
    server = launch([], tmp_path / "serve.log", cwd=tmp_path, script=script)
    try:
        server.wait_ready()
        assert len(server.worker_pids()) == 2
        for _ in range(4):
            assert httpx.get(server.url + "/").text == "from an object"
        assert server.stop() == 0
    finally:
        server.kill_group()


def test_run_rejects_a_misspelt_setting(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        "import supervisor\n"
        "try:\n"
        "    supervisor.run('x:app', wokers=2)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = launch([], tmp_path / "out.log", cwd=tmp_path, script=script)
    assert proc.wait_exit(30) == 0
    assert "did you mean 'workers'" in proc.log()
    assert proc.log().startswith("ConfigError")
    proc.kill_group()


def test_run_refuses_reload_with_an_app_object(tmp_path: Path) -> None:
    # Forked workers would serve the object they inherited, whatever the edit: a reload
    # that reports "generation 2 ready" with the old code is worse than none.
    script = tmp_path / "main.py"
    script.write_text(
        SCRIPT.replace("workers=2, access_log=False", "reload=True").replace(
            "    sys.exit(", "    try:\n        sys.exit("
        )
        + "    except Exception as exc:\n        print(type(exc).__name__, exc)\n"
    )
    proc = launch([], tmp_path / "out.log", cwd=tmp_path, script=script)
    try:
        assert proc.wait_exit(30) == 0
        assert proc.log() == (
            "ConfigError reload: needs the app as an import string, like "
            "supervisor.run('main:app', reload=True): an app object reaches the workers "
            "through fork, so a reload could not import the edited code\n"
        )
    finally:
        proc.kill_group()
