"""An app's own modules may be named like serve's code folders.

serve installs as the packages serve.server and serve.supervisor, so a user's `server.py`
or `supervisor.py` is the app, not serve's code (a top-level `server` package used to win
and the start failed with "module 'server' has no attribute 'app'").
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import launch

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"the app in {name}.py"}})
"""

pytestmark = pytest.mark.system


@pytest.mark.parametrize("name", ["server", "supervisor", "serve_app"])
def test_a_module_named_like_serves_folders_is_the_app(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(APP.format(name=name))
    # As a user runs it: from the app's directory, with nothing of the repo on the path.
    proc = launch(
        [f"{name}:app", "--bind", "127.0.0.1:0"],
        tmp_path / "serve.log",
        cwd=tmp_path,
        env={"PYTHONPATH": ""},
    )
    try:
        proc.wait_ready()
        response = httpx.get(proc.url + "/", timeout=10)
        assert response.text == f"the app in {name}.py"
    finally:
        proc.kill_group()


def test_import_serve_gives_the_programmatic_entry() -> None:
    import serve
    import serve.supervisor

    assert serve.run is serve.supervisor.run
    assert serve.__version__ == serve.supervisor.__version__
