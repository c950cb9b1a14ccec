"""The status file: atomic JSON written by the master, a table for `serve status`."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.status import (
    StatusError,
    format_status,
    read_status,
    reload_outcome,
    status_path,
    write_status,
)

NOW = 1_700_000_000.0
SNAPSHOT: dict[str, object] = {
    "master_pid": 100,
    "generation": 3,
    "phase": "serving",
    "started_at": NOW - 3725,
    "workers": [
        {
            "pid": 101,
            "generation": 3,
            "state": "ready",
            "started_at": NOW - 65,
            "rss": 45 * 1024 * 1024 + 512 * 1024,
            "requests": 1200,
        },
        {
            "pid": 99999,
            "generation": 2,
            "state": "draining",
            "started_at": NOW - 5,
            "rss": None,
            "requests": 7,
        },
    ],
}


def test_status_path() -> None:
    assert status_path("/run/serve.pid") == "/run/serve.pid.status.json"


def test_write_then_read(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    write_status(path, SNAPSHOT)
    assert read_status(path) == SNAPSHOT
    write_status(path, {**SNAPSHOT, "generation": 4})
    assert read_status(path)["generation"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_format_status_table() -> None:
    assert format_status(SNAPSHOT, now=NOW) == (
        "master 100  generation 3  phase serving  up 1h02m  workers 2\n"
        "PID    GEN  STATE     AGE    RSS      REQUESTS\n"
        "101    3    ready     1m05s  45.5MiB  1200\n"
        "99999  2    draining  5s     -        7\n"
    )


@pytest.mark.parametrize(
    ("last", "line"),
    [
        (
            {"started_at": NOW - 3, "reason": "SIGHUP", "result": None},
            "last reload: under way for 3s (SIGHUP)",
        ),
        (
            {"finished_at": NOW - 70, "reason": "SIGHUP", "generation": 4, "result": "ok"},
            "last reload: ok 1m10s ago (SIGHUP, generation 4)",
        ),
        (
            {"finished_at": NOW - 2, "reason": "files changed", "result": "failed", "detail": "x"},
            "last reload: failed 2s ago (files changed): x",
        ),
    ],
)
def test_format_status_shows_the_last_reload(last: dict[str, object], line: str) -> None:
    lines = format_status({**SNAPSHOT, "last_reload": last}, now=NOW).splitlines()
    assert lines[1] == line
    assert lines[2].startswith("PID ")


def test_reload_outcome_is_an_ended_reload_that_started_since() -> None:
    last = {"started_at": NOW, "result": "ok"}
    assert reload_outcome({"last_reload": last}, NOW) == last
    assert reload_outcome({"last_reload": last}, NOW + 0.001) is None
    assert reload_outcome({"last_reload": {**last, "result": None}}, NOW) is None
    assert reload_outcome({"last_reload": None}, NOW) is None
    assert reload_outcome({"last_reload": {**last, "started_at": "x"}}, NOW) is None


def test_format_status_survives_bad_fields() -> None:
    text = format_status({"master_pid": True, "workers": [{"rss": "big"}, "junk"]}, now=NOW)
    assert text == (
        "master -  generation -  phase -  up -  workers 1\n"
        "PID  GEN  STATE  AGE  RSS  REQUESTS\n"
        "-    -    -      -    -    -\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1]", "does not hold a JSON object"),
        ("{", "is not valid JSON: Expecting property name enclosed in double quotes"),
    ],
)
def test_read_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(StatusError) as info:
        read_status(str(path))
    assert str(info.value).startswith(f"status file {path} {message}")
    with pytest.raises(StatusError, match=r"cannot read status file .*: No such file"):
        read_status(str(tmp_path / "none.json"))
