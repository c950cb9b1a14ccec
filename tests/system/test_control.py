"""`serve reload|stop|status -c FILE` against a real master found through its pidfile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    ServeProcess,
    StartServe,
    run_serve,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.system


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "serve.yaml",
        app="master_apps:app",
        bind="127.0.0.1:0",
        workers=2,
        pidfile=str(tmp_path / "serve.pid"),
        graceful_timeout=5,
    )


def running(start_serve: StartServe, config: Path) -> ServeProcess:
    serve = start_serve(config=config)
    pidfile = config.parent / "serve.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text() == f"{serve.pid}\n")
    return serve


def two_workers(serve: ServeProcess) -> list[int]:
    pids: list[int] = wait_until(lambda: (p := serve.worker_pids()) and len(p) == 2 and p)
    return pids


def test_status_lists_the_master_and_every_worker(start_serve: StartServe, config: Path) -> None:
    serve = running(start_serve, config)
    workers = two_workers(serve)

    def listed() -> str | None:
        result = run_serve("status", "-c", str(config))
        assert result.returncode == 0, result.stderr
        ready = [re.search(rf"^{pid} +1 +ready ", result.stdout, re.M) for pid in workers]
        return result.stdout if all(ready) else None

    out = wait_until(listed)
    lines = out.splitlines()
    assert lines[0].startswith(f"master {serve.pid}  generation 1  phase ")
    assert lines[0].endswith("workers 2")
    assert lines[1].split() == ["PID", "GEN", "STATE", "AGE", "RSS", "REQUESTS"]
    assert sorted(int(line.split()[0]) for line in lines[2:]) == sorted(workers)
    assert all(re.search(r"\d+\.\dMiB", line) for line in lines[2:])


def test_reload_sends_hup_and_the_workers_roll(start_serve: StartServe, config: Path) -> None:
    serve = running(start_serve, config)
    old = set(two_workers(serve))
    result = run_serve("reload", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"serve master {serve.pid} reloaded: generation 2 is ready\n"
    # Ready means the new workers serve: the old ones are only draining.
    assert "generation 2 ready; retiring the previous workers" in serve.log()
    new = wait_until(lambda: (p := set(serve.worker_pids())) and len(p) == 2 and not p & old and p)
    assert len(new) == 2
    assert serve.proc.poll() is None


def test_stop_waits_until_the_master_exited(start_serve: StartServe, config: Path) -> None:
    serve = running(start_serve, config)
    workers = two_workers(serve)
    result = run_serve("stop", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"serve master {serve.pid} stopped\n"
    # It has exited already: only the test (its parent) has not collected it yet.
    assert serve.wait_exit(timeout=5) == 0
    assert not (config.parent / "serve.pid").exists()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert "serve stopped" in serve.log()


@pytest.mark.parametrize("command", ["reload", "stop", "status"])
def test_no_pidfile_means_not_running(command: str, config: Path) -> None:
    result = run_serve(command, "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"serve: error: serve is not running: cannot read pidfile {config.parent / 'serve.pid'}:"
        " No such file or directory\n"
    )
    assert result.stdout == ""


def test_control_commands_do_not_need_the_tls_files(config: Path) -> None:
    # An operator may signal the master without being able to read its private key.
    text = config.read_text() + f"ssl:\n  certfile: {config.parent / 'unreadable.pem'}\n"
    config.write_text(text)
    assert run_serve("check", "-c", str(config)).returncode == 2
    result = run_serve("status", "-c", str(config))
    assert result.returncode == 1
    assert "serve is not running" in result.stderr


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("command", ["reload", "stop", "status"])
def test_a_stale_pidfile_means_not_running(command: str, config: Path) -> None:
    pidfile = config.parent / "serve.pid"
    gone = dead_pid()
    pidfile.write_text(f"{gone}\n")
    result = run_serve(command, "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"serve: error: serve is not running: pidfile {pidfile} names process {gone}, "
        "which is gone (no master holds the pidfile)\n"
    )


def test_the_pidfile_can_come_from_a_flag(tmp_path: Path) -> None:
    pidfile = tmp_path / "flag.pid"
    result = run_serve("status", "--pidfile", str(pidfile))
    assert result.returncode == 1
    assert f"cannot read pidfile {pidfile}" in result.stderr


def test_without_a_pidfile_setting_it_is_a_config_error(tmp_path: Path) -> None:
    plain = write_config(tmp_path / "plain.yaml", app="master_apps:app")
    result = run_serve("stop", "-c", str(plain))
    assert result.returncode == 2
    assert result.stderr == (
        "serve: error: pidfile: not set: serve stop finds the master through it; set "
        "'pidfile:' in the config file (-c FILE) or pass --pidfile FILE\n"
    )


def test_a_second_master_refuses_a_live_pidfile(start_serve: StartServe, config: Path) -> None:
    first = running(start_serve, config)
    second = start_serve(config=config, wait=False)
    assert second.wait_exit() == 2
    assert f"names running serve master {first.pid}" in second.log()
    assert (config.parent / "serve.pid").read_text() == f"{first.pid}\n"
