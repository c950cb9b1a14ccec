"""Reloads that go wrong keep the site up: broken YAML, an app that cannot be imported, and
a file change in reload mode, with and without a syntax error."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess, StartServe, wait_until, write_config

pytestmark = pytest.mark.system

APP = "supervisor_apps:app"


def answer(serve: ServeProcess) -> str:
    response = httpx.get(serve.url, headers={"connection": "close"}, timeout=10)
    assert response.status_code == 200
    return response.text


def forked_workers(serve: ServeProcess) -> list[int]:
    """The master's children except the reload watcher (a helper process, not a worker)."""
    return [
        pid
        for pid in serve.worker_pids()
        if b"supervisor.watcher" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def watching(serve: ServeProcess) -> bool:
    """True once the reload watcher has its inotify watches in place (Linux)."""
    for pid in set(serve.worker_pids()) - set(forked_workers(serve)):
        # The helper is still starting: its fds come and go while we read them.
        with contextlib.suppress(FileNotFoundError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == "anon_inode:inotify":
                    info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                    return "inotify wd:" in info
    return False


def served_pids(serve: ServeProcess, count: int) -> set[int]:
    """Ask until `count` different workers answered (the kernel picks one per connection)."""
    seen: set[int] = set()

    def all_answered() -> bool:
        seen.add(int(answer(serve)))
        return len(seen) >= count

    wait_until(all_answered, timeout=30)
    return seen


def test_a_broken_yaml_keeps_the_old_workers_and_a_fixed_one_reloads(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2)
    serve = start_serve(config=config)
    old = set(serve.worker_pids())
    config.write_text(f"app: {APP}\nbind: 127.0.0.1:0\nworkers: [2\n")
    serve.signal(signal.SIGHUP)
    log = serve.wait_log("reload failed: ")
    assert f"reload failed: {config}:4:1: invalid YAML" in log
    assert "generation 1 keeps serving" in log
    assert served_pids(serve, 2) == old
    assert set(serve.worker_pids()) == old
    write_config(config, app=APP, bind="127.0.0.1:0", workers=3)
    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 2 ready; retiring the previous workers")
    new = set(wait_until(lambda: (p := serve.worker_pids()) and len(p) == 3 and p))
    assert new.isdisjoint(old)
    assert served_pids(serve, 3) == new


def test_an_app_that_fails_to_import_keeps_the_old_workers_and_a_fixed_one_reloads(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=2)
    serve = start_serve(config=config)
    old = set(serve.worker_pids())
    write_config(config, app="master_broken_app:app", bind="127.0.0.1:0", workers=2)
    serve.signal(signal.SIGHUP)
    log = serve.wait_log("generation 2 failed to boot; generation 1 keeps serving")
    assert "cannot import module 'master_broken_app'" in log
    assert "master_broken_app refuses to import" in log
    assert served_pids(serve, 2) == old
    wait_until(lambda: set(serve.worker_pids()) == old)
    write_config(config, app=APP, bind="127.0.0.1:0", workers=2)
    serve.signal(signal.SIGHUP)
    serve.wait_log("generation 3 ready; retiring the previous workers")
    new = set(wait_until(lambda: (p := serve.worker_pids()) and not set(p) & old and p))
    assert served_pids(serve, 2) == new
    assert serve.proc.poll() is None


LIVE_APP = """
VERSION = {version!r}


async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = VERSION.encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def test_reload_mode_rolls_the_workers_on_a_change_but_not_on_a_syntax_error(
    start_serve: StartServe, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "live_app.py"
    module.write_text(LIVE_APP.format(version="first"))
    config = write_config(
        tmp_path / "serve.yaml",
        app="live_app:app",
        app_dir=str(code),
        bind="127.0.0.1:0",
        reload={"enabled": True, "dirs": [str(code)]},
    )
    # No .pyc: a rewrite within the same second must not be served from a stale cache.
    serve = start_serve(config=config, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert f"Reload: watching {code} for *.py (excluding .* *.pyc __pycache__)" in serve.log()
    assert answer(serve) == "first"
    [first] = forked_workers(serve)
    wait_until(lambda: watching(serve))
    module.write_text(LIVE_APP.format(version="second version"))
    log = serve.wait_log("generation 2 ready; retiring the previous workers", timeout=30)
    assert "live_app.py" in log.split("changed: ", 1)[1].splitlines()[0]
    [second] = wait_until(lambda: (p := forked_workers(serve)) and first not in p and p)
    assert answer(serve) == "second version"
    module.write_text(LIVE_APP.format(version="third") + "\ndef broken(:\n")
    log = serve.wait_log("generation 3 failed to boot; generation 2 keeps serving", timeout=30)
    assert "SyntaxError in" in log
    assert answer(serve) == "second version"
    assert forked_workers(serve) == [second]


def test_a_reload_binds_new_addresses_first_and_closes_dropped_ones(
    start_serve: StartServe, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "serve.yaml", app=APP, bind="127.0.0.1:0", workers=1)
    serve = start_serve(config=config)
    tcp_url = serve.url
    path = tmp_path / "serve.sock"
    write_config(config, app=APP, bind=[f"unix:{path}"], workers=1)
    serve.signal(signal.SIGHUP)
    log = serve.wait_log("generation 2 ready; retiring the previous workers")
    # The new socket existed before the new generation forked, the old one went after.
    assert log.index(f"Listening on unix:{path}") < log.index("worker", log.index("generation 2"))
    assert log.index("generation 2 ready") < log.index(f"Closing {tcp_url}")
    with pytest.raises(httpx.ConnectError):
        httpx.get(tcp_url, timeout=10)
    [worker] = serve.worker_pids()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://serve/").text == str(worker)
    assert serve.stop() == 0
    assert not path.exists()
