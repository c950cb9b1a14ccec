"""The master's pidfile: created atomically, never clobbering a live master, removed on exit.

Rules:
- A reader never sees a half-written file: the pid goes into a temporary file in the same
  directory, which is then hard-linked into place (fails if the name exists, so two
  masters starting at once cannot both win) or, over a stale file, renamed into place.
- A pidfile naming a live process other than us is an error (another master runs); one
  naming a process that no longer exists is stale and replaced, with a log line.
- Only our own pidfile is ever removed or renamed: remove() and rename() first check
  that the file still holds our pid, so a master that lost its file to a newer one (USR2
  upgrade, or an operator) leaves the newer file alone.
"""

from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger("serve.master")


class PidfileError(Exception):
    """The pidfile cannot be used; str() is the whole message for the operator."""


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


class Pidfile:
    """A pidfile holding this process's pid."""

    def __init__(self, path: str, pid: int) -> None:
        self.path = path
        self.pid = pid

    @classmethod
    def create(cls, path: str) -> Pidfile:
        """Write our pid to `path`; raise PidfileError if a live process owns it."""
        pid = os.getpid()
        temp = _write_temp(path, pid)
        try:
            try:
                os.link(temp, path)
            except FileExistsError:
                _check_existing(path, pid)
                os.replace(temp, path)
        except OSError as exc:
            raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return cls(path, pid)

    def remove(self) -> None:
        """Delete the file if it still holds our pid; never raises."""
        if self._is_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def rename(self, suffix: str) -> None:
        """Move our file to path+suffix (USR2: the old master's becomes `.oldbin`)."""
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


def _write_temp(path: str, pid: int) -> str:
    import tempfile  # after the first fork: kept off the start-up path

    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    except OSError as exc:
        raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, f"{pid}\n".encode())
        # Readable by the control commands of other users (mkstemp creates 0600).
        os.fchmod(fd, 0o644)
    except OSError as exc:
        os.unlink(temp)
        raise PidfileError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return temp


def _check_existing(path: str, pid: int) -> None:
    try:
        other = read_pid(path)
    except PidfileError as exc:
        logger.warning("replacing unreadable pidfile: %s", exc)
        return
    if other != pid and process_exists(other):
        raise PidfileError(f"pidfile {path} names running process {other}")
    if other != pid:
        logger.warning("replacing stale pidfile %s (process %d is gone)", path, other)
