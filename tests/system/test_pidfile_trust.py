"""A pidfile proves nothing by itself: the control commands and a starting master check
that a serve master holds it before they trust the pid written there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartServe, run_serve, wait_until, write_config

pytestmark = pytest.mark.system


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """`sleep 300 &`: a live process that is no serve master."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "ops.yaml",
        app="master_apps:app",
        bind="127.0.0.1:0",
        workers=1,
        pidfile=str(tmp_path / "serve.pid"),
        graceful_timeout=5,
    )


@pytest.mark.parametrize("command", ["reload", "stop", "status"])
def test_a_pidfile_naming_a_stranger_is_never_signalled(
    command: str, config: Path, stranger: subprocess.Popen[bytes]
) -> None:
    pidfile = config.parent / "serve.pid"
    pidfile.write_text(f"{stranger.pid}\n")
    result = run_serve(command, "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"serve: error: serve is not running: pidfile {pidfile} names process {stranger.pid}, "
        "which is not a serve master (no master holds the pidfile)\n"
    )
    assert result.stdout == ""
    # Neither HUP nor TERM reached it.
    assert stranger.poll() is None


def test_a_master_replaces_a_pidfile_naming_a_stranger(
    start_serve: StartServe, config: Path, stranger: subprocess.Popen[bytes]
) -> None:
    pidfile = config.parent / "serve.pid"
    pidfile.write_text(f"{stranger.pid}\n")
    serve = start_serve(config=config)
    assert pidfile.read_text() == f"{serve.pid}\n"
    assert f"replacing stale pidfile {pidfile} (process {stranger.pid} holds no lock on it)" in (
        serve.log()
    )
    result = run_serve("status", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"master {serve.pid} ")
    assert stranger.poll() is None


def test_an_overwritten_pidfile_of_a_live_master_is_not_trusted(
    start_serve: StartServe, config: Path, stranger: subprocess.Popen[bytes]
) -> None:
    pidfile = config.parent / "serve.pid"
    serve = start_serve(config=config)
    wait_until(lambda: pidfile.read_text() == f"{serve.pid}\n")
    # Written in place: the master still holds the file, but the pid in it is a stranger's.
    with pidfile.open("r+") as stream:
        stream.write(f"{stranger.pid}\n")
        stream.truncate()
    result = run_serve("reload", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"serve: error: pidfile {pidfile} names process {stranger.pid}, but serve master "
        f"{serve.pid} holds it\n"
    )
    assert stranger.poll() is None
    assert serve.proc.poll() is None


def test_only_the_master_holds_the_pidfile(start_serve: StartServe, config: Path) -> None:
    pidfile = config.parent / "serve.pid"
    serve = start_serve(config=config)
    workers: list[int] = wait_until(serve.worker_pids)

    inode = pidfile.stat().st_ino

    def opened_by(pid: int) -> bool:
        # By inode: the lock was taken on the file before it was linked into place.
        return any(fd.stat().st_ino == inode for fd in Path(f"/proc/{pid}/fd").iterdir())

    assert opened_by(serve.pid)
    # A worker's copy would keep the lock after the master died.
    assert not any(opened_by(pid) for pid in workers)
