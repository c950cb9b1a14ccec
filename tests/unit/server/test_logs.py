"""Logging: escaping, line formats (checked on a real process's stderr), access lines."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.server.accesslog import AccessLogger
from serve.server.logs import (
    ACCESS_LOGGER_NAME,
    LOGGER_NAME,
    JsonFormatter,
    configure_logging,
    escape_control,
    reopen_log_files,
)
from serve.server.settings import DEFAULT_ACCESS_LOG_FORMAT
from tests.conftest import ROOT
from tests.unit.server.access_scope import log_request

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(?P<pid>\d+)\] (?P<level>[A-Z]+) (?P<name>[\w.]+): "
    r"(?P<msg>.*)$"
)


@pytest.fixture
def clean_loggers() -> Iterator[None]:
    """Give back the "serve" loggers and the root logger exactly as they were
    (configure_logging mutates them)."""
    saved = []
    for name in (LOGGER_NAME, ACCESS_LOGGER_NAME, None):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("/plain/path?q=1", "/plain/path?q=1"),
        ("/a\r\nb", "/a\\x0d\\x0ab"),
        ("\x00start", "\\x00start"),
        ("tab\there", "tab\\x09here"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("del\x7f", "del\\x7f"),
        ("café ünïcode", "café ünïcode"),
        ("", ""),
    ],
)
def test_escape_control(raw: str, escaped: str) -> None:
    assert escape_control(raw) == escaped


def test_escape_control_returns_clean_input_itself() -> None:
    value = "".join(["/no", "/controls"])
    assert escape_control(value) is value


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


FORKING_SCRIPT = """
    import logging, os
    from serve.server.logs import configure_logging

    configure_logging("info", "{fmt}")
    configure_logging("info", "{fmt}")
    log = logging.getLogger("serve")
    log.debug("hidden at info")
    log.info("from master")
    pid = os.fork()
    if pid == 0:
        configure_logging("debug", "{fmt}")
        log.debug("from worker")
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("worker failed")
        logging.getLogger("serve.access").info("access line")
        os._exit(0)
    os.waitpid(pid, 0)
    print(os.getpid(), pid)
"""


def test_text_lines_carry_the_pid_and_survive_fork_without_duplicates() -> None:
    result = run_script(FORKING_SCRIPT.format(fmt="text"))
    master, worker = map(int, result.stdout.split())
    heads = [TEXT_LINE.match(line) for line in result.stderr.splitlines()]
    lines = [(int(m["pid"]), m["level"], m["name"], m["msg"]) for m in heads if m]
    assert lines == [
        (master, "INFO", "serve", "from master"),
        (worker, "DEBUG", "serve", "from worker"),
        (worker, "ERROR", "serve", "worker failed"),
        (worker, "INFO", "serve.access", "access line"),
    ]
    assert "Traceback (most recent call last)" in result.stderr
    assert "\nValueError: bad\n" in result.stderr


def test_json_lines_parse_with_stable_keys() -> None:
    result = run_script(FORKING_SCRIPT.format(fmt="json"))
    master, worker = map(int, result.stdout.split())
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["msg"] for e in entries] == [
        "from master",
        "from worker",
        "worker failed",
        "access line",
    ]
    for entry in entries:
        assert set(entry) - {"exc"} == {"ts", "level", "pid", "logger", "msg"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["ts"])
    assert [e["pid"] for e in entries] == [master, worker, worker, worker]
    assert [e["level"] for e in entries] == ["INFO", "DEBUG", "ERROR", "INFO"]
    assert [e["logger"] for e in entries] == ["serve", "serve", "serve", "serve.access"]
    assert "exc" not in entries[0]
    assert entries[2]["exc"].startswith("Traceback (most recent call last)")
    assert entries[2]["exc"].endswith("ValueError: bad")


@pytest.mark.usefixtures("clean_loggers")
def test_configure_logging_is_idempotent_in_process() -> None:
    configure_logging("warning", "text")
    configure_logging("debug", "json")
    serve = logging.getLogger(LOGGER_NAME)
    owned = [h for h in serve.handlers if type(h).__name__ == "_ServeHandler"]
    assert len(owned) == 1
    assert isinstance(owned[0].formatter, JsonFormatter)
    assert serve.level == logging.DEBUG
    assert serve.propagate is False
    assert logging.getLogger(ACCESS_LOGGER_NAME).getEffectiveLevel() == logging.INFO
    # With JSON lines the app's records (root) go through the same handler, once.
    root = logging.getLogger()
    assert [h for h in root.handlers if type(h).__name__ == "_ServeHandler"] == owned
    assert root.level == logging.DEBUG
    configure_logging("info", "text")
    assert not [h for h in root.handlers if type(h).__name__ == "_ServeHandler"]


@pytest.mark.usefixtures("clean_loggers")
def test_access_lines_stay_on_when_the_level_is_warning() -> None:
    configure_logging("warning", "text")
    assert logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO) is False
    assert logging.getLogger(ACCESS_LOGGER_NAME).isEnabledFor(logging.INFO) is True


def test_bad_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="log level must be one of"):
        configure_logging("loud", "text")


@pytest.fixture
def access_stream(clean_loggers: None) -> Iterator[io.StringIO]:
    """Everything "serve.access" emits, formatted by the given handler only."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(ACCESS_LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream


def use_formatter(formatter: logging.Formatter) -> None:
    logging.getLogger(ACCESS_LOGGER_NAME).handlers[0].setFormatter(formatter)


def test_access_line_default_format(access_stream: io.StringIO) -> None:
    use_formatter(logging.Formatter("%(message)s"))
    access = AccessLogger(DEFAULT_ACCESS_LOG_FORMAT, json=False)
    log_request(access, ("127.0.0.1", 51234), "GET", "/items?q=%20x", "1.1", 200, 1234, 0.0125)
    log_request(access, None, "POST", "/upload", "1.0", 413, 0, 0.0004)
    assert access_stream.getvalue().splitlines() == [
        '127.0.0.1:51234 - "GET /items?q=%20x HTTP/1.1" 200 1234 12.5ms',
        '- - "POST /upload HTTP/1.0" 413 0 0.4ms',
    ]


def test_access_line_escapes_control_characters(access_stream: io.StringIO) -> None:
    use_formatter(logging.Formatter("%(message)s"))
    access = AccessLogger("%(method)s %(path)s %(request_line)s", json=False)
    target = "/a\r\n127.0.0.1 - forged?x=\x00"
    log_request(access, ("::1", 1), "G\x1bET", target, "1.1", 200, 0, 0.0)
    [line] = access_stream.getvalue().splitlines()
    assert line == (
        "G\\x1bET /a\\x0d\\x0a127.0.0.1 - forged "
        "G\\x1bET /a\\x0d\\x0a127.0.0.1 - forged?x=\\x00 HTTP/1.1"
    )


def test_access_line_in_json_has_the_fields(access_stream: io.StringIO) -> None:
    use_formatter(JsonFormatter())
    access = AccessLogger(DEFAULT_ACCESS_LOG_FORMAT, json=True)
    log_request(access, ("10.0.0.1", 40000), "GET", "/p?x=\n", "1.1", 404, 9, 0.002)
    entry = json.loads(access_stream.getvalue())
    assert entry["logger"] == "serve.access"
    assert entry["level"] == "INFO"
    assert entry["msg"] == '10.0.0.1:40000 - "GET /p?x=\\x0a HTTP/1.1" 404 9 2.0ms'
    assert {k: entry[k] for k in ("client", "method", "path", "status", "bytes")} == {
        "client": "10.0.0.1:40000",
        "method": "GET",
        "path": "/p",
        "status": 404,
        "bytes": 9,
    }
    assert entry["request_line"] == "GET /p?x=\\x0a HTTP/1.1"
    assert entry["duration_ms"] == pytest.approx(2.0)


def test_access_format_with_unknown_field_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"access_log_format .* is invalid \(KeyError: 'agent'\)"):
        AccessLogger("%(client)s %(agent)s", json=False)


@pytest.fixture
def file_logging(clean_loggers: None) -> Iterator[None]:
    yield
    # Close the file handler before the saved handlers come back.
    configure_logging("info", "text")


def messages_in(path: Path) -> list[str]:
    return [m["msg"] for m in map(TEXT_LINE.match, path.read_text().splitlines()) if m]


@pytest.mark.usefixtures("file_logging")
def test_log_file_is_written_and_reopened_after_a_move(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    configure_logging("info", "text", log_file=str(path))
    log = logging.getLogger(LOGGER_NAME)
    log.info("first")
    logging.getLogger(ACCESS_LOGGER_NAME).info("access line")
    # logrotate moves the file; the process still holds the moved one until it reopens.
    path.rename(tmp_path / "serve.log.1")
    log.info("after the move")
    reopen_log_files()
    log.info("after the reopen")
    assert messages_in(tmp_path / "serve.log.1") == ["first", "access line", "after the move"]
    assert messages_in(path) == ["after the reopen"]


@pytest.mark.usefixtures("file_logging")
def test_a_failed_reopen_keeps_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    configure_logging("info", "json", log_file=str(directory / "serve.log"))
    (directory / "serve.log").rename(tmp_path / "kept.log")
    directory.rmdir()
    with pytest.raises(FileNotFoundError):
        reopen_log_files()
    logging.getLogger(LOGGER_NAME).warning("still logged")
    lines = (tmp_path / "kept.log").read_text().splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["still logged"]


def test_reopen_without_a_log_file_is_a_no_op(clean_loggers: None) -> None:
    configure_logging("info", "text")
    reopen_log_files()
    owned = [
        h for h in logging.getLogger(LOGGER_NAME).handlers if type(h).__name__ == "_ServeHandler"
    ]
    assert len(owned) == 1


def test_unopenable_log_file_raises(clean_loggers: None, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        configure_logging("info", "text", log_file=str(tmp_path / "no" / "such.log"))


ROTATING_SCRIPT = """
    import logging, os, sys
    from serve.server.logs import configure_logging, reopen_log_files

    path = sys.argv[1]
    log = logging.getLogger("serve")
    configure_logging("info", "text", log_file=path)
    log.info("master before")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        configure_logging("info", "text", log_file=path)
        log.info("worker before")
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        reopen_log_files()
        log.info("worker after")
        os._exit(0)
    os.read(ready_r, 1)
    os.rename(path, path + ".1")
    reopen_log_files()
    log.info("master after")
    os.write(go_w, b"g")
    os.waitpid(pid, 0)
"""


def test_master_and_worker_share_the_file_and_both_reopen(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ROTATING_SCRIPT), str(path)],
        env=env,
        timeout=60,
        check=True,
    )
    assert messages_in(tmp_path / "serve.log.1") == ["master before", "worker before"]
    assert sorted(messages_in(path)) == ["master after", "worker after"]
