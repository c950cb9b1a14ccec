"""The pidfile: atomic creation, stale and live owners, removal and rename of our own only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.pidfile import (
    ForeignPidError,
    Pidfile,
    PidfileError,
    process_exists,
    read_pid,
    running_master,
)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: nothing runs under it."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_create_writes_our_pid_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    pidfile = Pidfile.create(str(path))
    assert path.read_text() == f"{os.getpid()}\n"
    assert read_pid(str(path)) == os.getpid()
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["serve.pid"]
    pidfile.remove()
    assert list(tmp_path.iterdir()) == []


def test_stale_pidfile_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "serve.pid"
    gone = dead_pid()
    path.write_text(f"{gone}\n")
    Pidfile.create(str(path))
    assert read_pid(str(path)) == os.getpid()
    assert f"replacing stale pidfile {path} (process {gone} is gone)" in caplog.text


def test_garbage_pidfile_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    path.write_text("not a pid\n")
    Pidfile.create(str(path))
    assert read_pid(str(path)) == os.getpid()


def lock_in_child(path: Path) -> subprocess.Popen[str]:
    """A process that holds a flock on `path` (like a master) until killed."""
    code = (
        "import fcntl, sys, time\n"
        f"stream = open({str(path)!r})\n"
        "fcntl.flock(stream, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_a_locked_pidfile_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    path.write_text("4242\n")
    holder = lock_in_child(path)
    try:
        with pytest.raises(PidfileError) as info:
            Pidfile.create(str(path))
        assert str(info.value) == f"pidfile {path} names running serve master 4242"
        assert path.read_text() == "4242\n"
        assert [p.name for p in tmp_path.iterdir()] == ["serve.pid"]
    finally:
        holder.kill()
        holder.communicate()


def test_a_live_pid_without_the_lock_is_stale(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "serve.pid"
    path.write_text(f"{sleeper.pid}\n")
    pidfile = Pidfile.create(str(path))
    assert read_pid(str(path)) == os.getpid()
    assert f"(process {sleeper.pid} holds no lock on it)" in caplog.text
    pidfile.remove()


def test_running_master_trusts_the_lock_and_its_holder(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "serve.pid"
    pidfile = Pidfile.create(str(path))
    assert running_master(str(path)) == os.getpid()
    path.write_text(f"{sleeper.pid}\n")
    with pytest.raises(ForeignPidError) as info:
        running_master(str(path))
    assert str(info.value) == (
        f"pidfile {path} names process {sleeper.pid}, but serve master {os.getpid()} holds it"
    )
    pidfile.close()
    with pytest.raises(PidfileError) as info:
        running_master(str(path))
    assert str(info.value) == (
        f"pidfile {path} names process {sleeper.pid}, which is not a serve master "
        "(no master holds the pidfile)"
    )


def test_the_lock_follows_a_rename_and_ends_with_close(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    pidfile = Pidfile.create(str(path))
    pidfile.rename(".oldbin")
    assert running_master(str(path) + ".oldbin") == os.getpid()
    # A new master's file beside it is not blocked by the old lock.
    newer = Pidfile.create(str(path))
    pidfile.remove()
    newer.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_zombie_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    # Exited but not reaped: the pid still exists, as a zombie.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert not process_exists(proc.pid)
    finally:
        proc.wait()
    assert process_exists(os.getpid())


def test_remove_only_our_own(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    pidfile = Pidfile.create(str(path))
    path.write_text("12345\n")
    pidfile.remove()
    assert path.read_text() == "12345\n"
    path.unlink()
    pidfile.remove()


def test_rename_moves_our_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.pid"
    pidfile = Pidfile.create(str(path))
    pidfile.rename(".oldbin")
    assert not path.exists()
    assert read_pid(str(path) + ".oldbin") == os.getpid()
    assert pidfile.path == str(path) + ".oldbin"
    # The new master writes its own file at the original path meanwhile.
    path.write_text("777\n")
    pidfile.remove()
    assert not Path(str(path) + ".oldbin").exists()
    assert path.read_text() == "777\n"


def test_unwritable_directory(tmp_path: Path) -> None:
    with pytest.raises(PidfileError) as info:
        Pidfile.create(str(tmp_path / "missing" / "serve.pid"))
    assert str(info.value) == (
        f"cannot write pidfile {tmp_path / 'missing' / 'serve.pid'}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "does not hold a pid (got '')"), ("0\n", "does not hold a pid (got '0')")],
)
def test_read_pid_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "serve.pid"
    path.write_text(content)
    with pytest.raises(PidfileError) as info:
        read_pid(str(path))
    assert str(info.value) == f"pidfile {path} {message}"
    with pytest.raises(PidfileError) as info:
        read_pid(str(tmp_path / "none.pid"))
    assert (
        str(info.value) == f"cannot read pidfile {tmp_path / 'none.pid'}: No such file or directory"
    )
