"""What the chaos and soak drivers share: a serve master started from a config, the figures
read from its processes, and the header of their sections in bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from bench import machine
from tests.conftest import ROOT, ServeProcess, launch, write_config

MIB = 1024 * 1024
_METRICS_RE = re.compile(r"Metrics on http://127\.0\.0\.1:(\d+)")
_RESTART_RE = re.compile(r'^serve_worker_restarts_total\{reason="(\w+)"\} ([\d.]+)$', re.M)


@contextmanager
def running_serve(config: dict[str, Any], keep_dir: Path | None = None) -> Iterator[ServeProcess]:
    """serve with `config` (YAML keys), its log in `keep_dir` or a temporary directory; the
    whole process group is killed on the way out."""
    with tempfile.TemporaryDirectory(prefix="serve-run-") as tmp:
        # Absolute: serve runs in tests/apps.
        workdir = (keep_dir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        path = write_config(workdir / "serve.yaml", **config)
        proc = launch(["-c", str(path)], workdir / "serve.log")
        try:
            yield proc.wait_ready(60)
        finally:
            proc.kill_group()


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MIB


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def restarts_by_reason(serve: ServeProcess) -> dict[str, int]:
    """serve_worker_restarts_total by reason, from the master's /metrics listener."""
    match = _METRICS_RE.search(serve.log())
    if match is None:
        raise RuntimeError("the master logged no metrics listener")
    url = f"http://127.0.0.1:{match.group(1)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {reason: int(float(value)) for reason, value in _RESTART_RE.findall(text)}


def shown_command(module: str, argv: list[str]) -> str:
    """The command line as a reader runs it from the repository (no machine paths)."""
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else python.name
    return shlex.join([shown, "-m", module, *argv])


def results_header(command: str) -> str:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"- Date: {date}\n"
        f"- Machine: {machine.describe()}; Python {python}\n"
        f"- Command: `{command}`\n"
    )


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)
