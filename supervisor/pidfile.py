"""The master's pidfile: created atomically, locked for the master's life, removed on exit.

Rules:
- A reader never sees a half-written file: the pid goes into a temporary file in the same
  directory, which is then hard-linked into place (fails if the name exists, so two
  masters starting at once cannot both win) or, over a stale file, renamed into place.
- The master holds an exclusive flock(2) on the file from before it appears until the
  master exits (the kernel drops it even after SIGKILL). The lock, not the pid, is the
  proof that a master owns the file: a pid alone may name a process that reused it, or
  whatever an operator wrote there. The lock's descriptor is close-on-exec, and forked
  workers close their copy (flock locks are shared across fork), so only the master
  holds it.
- A locked pidfile is an error at start (another master runs); an unlocked one is stale
  and replaced, with a log line, whatever process its pid names now.
- The control commands (running_master) signal a pid only when the file is locked and,
  where /proc/locks tells who holds the lock, by that pid.
- Only our own pidfile is ever removed or renamed: remove() and rename() first check
  that the file still holds our pid, so a master that lost its file to a newer one (USR2
  upgrade, or an operator) leaves the newer file alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os

logger = logging.getLogger("serve.master")

_PROC_LOCKS = "/proc/locks"


class PidfileError(Exception):
    """The pidfile cannot be used; str() is the whole message for the operator."""


class ForeignPidError(PidfileError):
    """A master holds the pidfile, but the pid written in it is another process's."""


def read_pid(path: str) -> int:
    """The pid stored in `path`; raise PidfileError when it is missing or holds no pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(64).strip()
    except OSError as exc:
        raise PidfileError(f"cannot read pidfile {path}: {exc.strerror or exc}") from None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise PidfileError(f"pidfile {path} does not hold a pid (got {text[:20]!r})")
    return int(text)


def process_exists(pid: int) -> bool:
    """True when `pid` names a live process (possibly another user's); a zombie is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # /proc/PID/stat is "pid (comm) STATE ..."; comm may hold spaces and parentheses.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            stat = stream.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def running_master(path: str) -> int:
    """The pid of the live master that holds `path`.

    Raises PidfileError when the file cannot be read or no master holds it, ForeignPidError
    when it names another process than the master holding it.
    """
    pid = read_pid(path)
    if not _is_locked(path):
        what = "which is gone" if not process_exists(pid) else "which is not a serve master"
        raise PidfileError(
            f"pidfile {path} names process {pid}, {what} (no master holds the pidfile)"
        )
    holders = _lock_holders(path)
    if holders and pid not in holders:
        raise ForeignPidError(
            f"pidfile {path} names process {pid}, but serve master {min(holders)} holds it"
        )
    return pid


def _is_locked(path: str) -> bool:
    """Whether a process holds a flock on `path` (a shared probe, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _lock_holders(path: str) -> set[int]:
    """Pids holding a flock on `path` per /proc/locks; empty when that cannot be read.

    A line reads `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`: the pid, then the
    device (major:minor in hex) and the inode of the locked file.
    """
    try:
        stat = os.stat(path)
        with open(_PROC_LOCKS, encoding="ascii", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return set()
    inode = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    holders = set()
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and inode in fields:
            pid = fields[fields.index(inode) - 1]
            if pid.isdigit():
                holders.add(int(pid))
    return holders


class Pidfile:
    """A pidfile holding this process's pid, locked through `lock_fd` until close()."""

    def __init__(self, path: str, pid: int, lock_fd: int) -> None:
        self.path = path
        self.pid = pid
        self.lock_fd = lock_fd

    @classmethod
    def create(cls, path: str) -> Pidfile:
        """Write our pid to `path` and lock it; raise PidfileError if a master holds it."""
        pid = os.getpid()
        temp, fd = _write_locked_temp(path, pid)
        try:
            try:
                os.link(temp, path)
            except FileExistsError:
                _check_existing(path)
                os.replace(temp, path)
        except OSError as exc:
            os.close(fd)
            raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return cls(path, pid, fd)

    def remove(self) -> None:
        """Delete the file if it still holds our pid, then drop the lock; never raises."""
        if self._is_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.close()

    def close(self) -> None:
        """Drop the lock (the file stays); a second call does nothing."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def rename(self, suffix: str) -> None:
        """Move our file to path+suffix (USR2: the old master's becomes `.oldbin`); the
        lock moves with it."""
        if not self._is_ours():
            return
        target = self.path + suffix
        try:
            os.replace(self.path, target)
        except OSError as exc:
            raise PidfileError(
                f"cannot rename pidfile {self.path}: {exc.strerror or exc}"
            ) from None
        self.path = target

    def _is_ours(self) -> bool:
        try:
            return read_pid(self.path) == self.pid
        except PidfileError:
            return False


def _write_locked_temp(path: str, pid: int) -> tuple[str, int]:
    """A temporary file beside `path` holding `pid`, and a descriptor locking it."""
    import tempfile  # after the first fork: kept off the start-up path

    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    except OSError as exc:
        raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    try:
        # Locked before it is linked into place: no moment shows an unlocked pidfile.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{pid}\n".encode())
        # Readable by the control commands of other users (mkstemp creates 0600).
        os.fchmod(fd, 0o644)
    except OSError as exc:
        os.close(fd)
        os.unlink(temp)
        raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    return temp, fd


def _check_existing(path: str) -> None:
    """Raise PidfileError if a master holds `path`; log why it may be replaced otherwise."""
    try:
        other = read_pid(path)
    except PidfileError as exc:
        if _is_locked(path):
            raise PidfileError(f"pidfile {path} is held by a running serve master") from None
        logger.warning("replacing unreadable pidfile: %s", exc)
        return
    if _is_locked(path):
        raise PidfileError(f"pidfile {path} names running serve master {other}")
    reason = "is gone" if not process_exists(other) else "holds no lock on it"
    logger.warning("replacing stale pidfile %s (process %d %s)", path, other, reason)
