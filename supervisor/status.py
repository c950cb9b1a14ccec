"""The status file: a JSON snapshot of the master and its workers for `serve status`.

Rules:
- The master writes, `serve status` reads; they share no memory and no socket, only this
  file next to the pidfile (pidfile + ".status.json").
- Writes are atomic (temporary file in the same directory, then rename), so a reader sees
  the old snapshot or the new one, never half of one.
- The snapshot is a mapping: master_pid, generation, phase, started_at, workers, a list
  of {pid, generation, state, started_at, rss, requests}, and last_reload, null or
  {started_at, finished_at, reason, generation, result, detail} (result null while the
  reload is under way, then "ok" or "failed"). Times are Unix timestamps
  (time.time()), so another process can compute ages; rss is bytes or null.
- The reader trusts nothing: a field of the wrong type shows as "-", never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping

STATUS_SUFFIX = ".status.json"
_COLUMNS = ("PID", "GEN", "STATE", "AGE", "RSS", "REQUESTS")


class StatusError(Exception):
    """The status file cannot be read; str() is the whole message for the operator."""


def status_path(pidfile: str) -> str:
    return pidfile + STATUS_SUFFIX


def write_status(path: str, snapshot: Mapping[str, object]) -> None:
    """Replace `path` with `snapshot` as JSON in one rename; OSError on failure."""
    import tempfile  # after the first fork: kept off the start-up path

    directory, name = os.path.split(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(snapshot, stream, default=str)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_status(path: str) -> dict[str, object]:
    """The snapshot in `path`; raise StatusError when it is missing or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except OSError as exc:
        raise StatusError(f"cannot read status file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise StatusError(f"status file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StatusError(f"status file {path} does not hold a JSON object")
    return data


def format_status(snapshot: Mapping[str, object], now: float | None = None) -> str:
    """A master line, then one table row per worker (pid, generation, state, age, RSS, requests)."""
    now = time.time() if now is None else now
    workers = snapshot.get("workers")
    rows = (
        [_worker_row(w, now) for w in workers if isinstance(w, Mapping)]
        if isinstance(workers, list)
        else []
    )
    master = (
        f"master {_text(snapshot.get('master_pid'))}"
        f"  generation {_text(snapshot.get('generation'))}"
        f"  phase {_text(snapshot.get('phase'))}"
        f"  up {_age(snapshot.get('started_at'), now)}"
        f"  workers {len(rows)}"
    )
    reload_line = _reload_line(snapshot.get("last_reload"), now)
    if reload_line:
        master += "\n" + reload_line
    table = [_COLUMNS, *rows]
    widths = [max(len(row[index]) for row in table) for index in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join([master, *lines]) + "\n"


def _reload_line(last: object, now: float) -> str | None:
    if not isinstance(last, Mapping):
        return None
    reason = _text(last.get("reason"))
    result = last.get("result")
    if result is None:
        return f"last reload: under way for {_age(last.get('started_at'), now)} ({reason})"
    line = f"last reload: {_text(result)} {_age(last.get('finished_at'), now)} ago ({reason}"
    generation = last.get("generation")
    line += f", generation {generation})" if isinstance(generation, int) else ")"
    detail = last.get("detail")
    return f"{line}: {detail}" if isinstance(detail, str) and detail else line


def reload_outcome(snapshot: Mapping[str, object], since: float) -> Mapping[str, object] | None:
    """The last reload if it started at `since` (Unix time) or later and has ended."""
    last = snapshot.get("last_reload")
    if not isinstance(last, Mapping) or last.get("result") is None:
        return None
    started = last.get("started_at")
    if isinstance(started, bool) or not isinstance(started, (int, float)) or started < since:
        return None
    return last


def _worker_row(worker: Mapping[str, object], now: float) -> tuple[str, ...]:
    return (
        _text(worker.get("pid")),
        _text(worker.get("generation")),
        _text(worker.get("state")),
        _age(worker.get("started_at"), now),
        _size(worker.get("rss")),
        _text(worker.get("requests")),
    )


def _text(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return "-"
    return str(value)


def _age(started_at: object, now: float) -> str:
    if isinstance(started_at, bool) or not isinstance(started_at, (int, float)):
        return "-"
    seconds = max(0, int(now - started_at))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def _size(rss: object) -> str:
    if isinstance(rss, bool) or not isinstance(rss, int) or rss < 0:
        return "-"
    if rss < 1024:
        return f"{rss}B"
    value = rss / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"
