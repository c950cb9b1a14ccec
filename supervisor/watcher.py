"""Development reload: a helper process watches files and reports changes over a pipe.

Rules:
- The watching runs in a separate process (`python -m serve.supervisor.watcher SPEC`), never in
  a thread of the master: the master forks workers and must stay single-threaded.
- The helper writes one JSON line per debounced batch of changes: a sorted list of the
  changed paths, relative to the working directory. The master polls Watcher.fd with its
  other descriptors and calls read_changes() when it is readable; nothing here blocks.
- The helper never outlives the master: it asks the kernel for SIGTERM when its parent
  dies (PR_SET_PDEATHSIG) and also checks its parent pid between batches.
- A path is ignored when any part of it below the watched directory matches an exclude
  pattern (so "__pycache__" and ".*" drop whole trees); otherwise it counts when its file
  name matches an include pattern. Patterns are fnmatch globs, case-sensitive.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from serve.supervisor.config_schema import ReloadSpec

# Changes closer together than this are reported as one batch.
DEBOUNCE_MS = 400
# How often the helper wakes without changes to check that its parent is still there.
PARENT_CHECK_MS = 500
_STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = str(Path(__file__).absolute().parents[2])


class WatcherError(Exception):
    """The watcher cannot start; str() is the whole message for the operator."""


class Watcher:
    """The master's side: the helper process and the read end of its pipe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdout is None:
            raise ValueError("the watcher helper needs stdout=PIPE")
        self._proc = proc
        self._stdout = proc.stdout
        self.fd = self._stdout.fileno()
        self.pid = proc.pid
        os.set_blocking(self.fd, False)
        self._buffer = b""
        self._eof = False

    @classmethod
    def start(cls, spec: ReloadSpec) -> Watcher:
        """Start the helper for `spec`; raise WatcherError if a directory does not exist."""
        missing = [d for d in spec.dirs if not Path(d).is_dir()]
        if missing:
            raise WatcherError(f"reload: cannot watch {missing[0]!r}: no such directory")
        config = {"dirs": spec.dirs, "include": spec.include, "exclude": spec.exclude}
        argv = [
            sys.executable,
            "-m",
            "serve.supervisor.watcher",
            json.dumps(config),
            str(os.getpid()),
        ]
        # The helper imports this very package, wherever the master found it.
        path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        return cls(proc)

    @property
    def running(self) -> bool:
        """False once the helper closed its pipe (it exited); the master should stop polling."""
        return not self._eof

    def read_changes(self) -> list[str]:
        """Every changed path reported since the last call, without blocking."""
        while not self._eof:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self._eof = not chunk
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        changed: list[str] = []
        for line in lines:
            with contextlib.suppress(ValueError):
                batch = json.loads(line)
                changed.extend(p for p in batch if isinstance(p, str) and p not in changed)
        return changed

    def stop(self) -> None:
        """Stop the helper and close the pipe; safe to call twice."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stdout.close()
        self._eof = True


class PathFilter:
    """watchfiles filter: True for a path that should trigger a reload."""

    def __init__(
        self, roots: Sequence[str], include: Sequence[str], exclude: Sequence[str]
    ) -> None:
        self._roots = [Path(root).resolve() for root in roots]
        self._include = tuple(include)
        self._exclude = tuple(exclude)

    def __call__(self, change: object, path: str) -> bool:
        parts = self._relative_parts(Path(path))
        if not parts:
            return False
        if any(fnmatchcase(part, pattern) for part in parts for pattern in self._exclude):
            return False
        return any(fnmatchcase(parts[-1], pattern) for pattern in self._include)

    def _relative_parts(self, path: Path) -> tuple[str, ...]:
        for root in self._roots:
            if path.is_relative_to(root):
                return path.relative_to(root).parts
        return ()


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent may have died before prctl: then we already have a new parent.
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: Sequence[str]) -> int:
    """The helper: watch, print a JSON line per batch, exit when the parent is gone."""
    import watchfiles

    config, parent = json.loads(argv[0]), int(argv[1])
    # Ctrl-C in a terminal reaches the whole process group; the master decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    path_filter = PathFilter(config["dirs"], config["include"], config["exclude"])
    batches = watchfiles.watch(
        *config["dirs"],
        watch_filter=path_filter,
        debounce=DEBOUNCE_MS,
        rust_timeout=PARENT_CHECK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
    )
    for changes in batches:
        if os.getppid() != parent:
            return 0
        if not changes:
            continue
        line = json.dumps(sorted({os.path.relpath(path) for _, path in changes}))
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
