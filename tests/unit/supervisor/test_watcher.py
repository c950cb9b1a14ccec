"""The file watcher: a real watchfiles helper process on a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.supervisor.config_schema import ReloadSpec
from serve.supervisor.pidfile import process_exists
from serve.supervisor.watcher import PathFilter, Watcher, WatcherError
from tests.conftest import ROOT, wait_until


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project tree as the working directory, like the master's."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def watcher(project: Path) -> Iterator[Watcher]:
    started = Watcher.start(ReloadSpec(enabled=True, dirs=(".",)))
    yield started
    started.stop()


def touch_until_reported(watcher: Watcher, paths: list[Path]) -> list[str]:
    """Touch `paths` until the watcher reports a batch (it may still be starting up)."""
    seen: list[str] = []

    def reported() -> bool:
        for path in paths:
            path.write_text(f"x = {len(seen)}\n")
        seen.extend(watcher.read_changes())
        assert watcher.running, "the watcher helper exited"
        return bool(seen)

    wait_until(reported, timeout=20, interval=0.2)
    return seen


def test_reports_a_changed_python_file_and_ignores_excluded_ones(
    project: Path, watcher: Watcher
) -> None:
    included = project / "pkg" / "views.py"
    ignored = [
        project / "pkg" / "__pycache__" / "views.cpython-311.py",
        project / ".git" / "hook.py",
        project / "pkg" / "notes.txt",
        project / "pkg" / "views.pyc",
    ]
    seen = touch_until_reported(watcher, [*ignored, included])
    assert set(seen) == {os.path.join("pkg", "views.py")}
    assert watcher.running


def test_stop_ends_the_helper(project: Path) -> None:
    watcher = Watcher.start(ReloadSpec(enabled=True))
    pid = watcher.pid
    assert process_exists(pid)
    watcher.stop()
    assert not process_exists(pid)
    assert not watcher.running
    watcher.stop()


def test_a_dead_helper_reads_as_end_of_stream(project: Path) -> None:
    watcher = Watcher.start(ReloadSpec(enabled=True))
    try:
        os.kill(watcher.pid, signal.SIGKILL)
        wait_until(lambda: watcher.read_changes() == [] and not watcher.running)
    finally:
        watcher.stop()


def test_helper_dies_with_its_parent(project: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from serve.supervisor.config_schema import ReloadSpec
                from serve.supervisor.watcher import Watcher
                watcher = Watcher.start(ReloadSpec(enabled=True))
                print(watcher.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    helper = int(parent.stdout.readline())
    assert process_exists(helper)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    wait_until(lambda: not process_exists(helper), timeout=10)


def test_missing_directory_is_refused(project: Path) -> None:
    with pytest.raises(WatcherError) as info:
        Watcher.start(ReloadSpec(enabled=True, dirs=("src",)))
    assert str(info.value) == "reload: cannot watch 'src': no such directory"


@pytest.mark.parametrize(
    ("path", "triggers"),
    [
        ("/p/app.py", True),
        ("/p/pkg/deep/mod.py", True),
        ("/p/pkg/templates/page.html", True),
        ("/p/README.md", False),
        ("/p/pkg/__pycache__/mod.py", False),
        ("/p/.venv/lib/site.py", False),
        ("/p/pkg/.hidden.py", False),
        ("/p/pkg/mod.pyc", False),
        ("/elsewhere/app.py", False),
        ("/p", False),
    ],
)
def test_path_filter(path: str, triggers: bool) -> None:
    # Exclusion looks only below the watched directory: a dot directory above it is fine.
    path_filter = PathFilter(["/p"], ["*.py", "*.html"], [".*", "*.pyc", "__pycache__"])
    assert path_filter(None, path) is triggers
    hidden_root = PathFilter(["/home/.work/p"], ["*.py"], [".*"])
    assert hidden_root(None, "/home/.work/p/app.py")
