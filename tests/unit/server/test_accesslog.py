"""The access log's fast path: lines rendered as logging renders them, batched, whole."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serve.server.access_buffer import PIPE_BUF, AccessBuffer, line_pieces
from serve.server.accesslog import AccessLogger
from serve.server.logs import (
    ACCESS_LOGGER_NAME,
    LOGGER_NAME,
    TEXT_DATE_FORMAT,
    configure_logging,
    log_stream_fd,
)
from serve.server.settings import DEFAULT_ACCESS_LOG_FORMAT
from tests.unit.server.access_scope import log_request

TEXT_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
DURATION = re.compile(r'"duration_ms": ([0-9.]+)')
JSON_STAMP = re.compile(r'^\{"ts": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", ')
# Each: client, method, target, http_version, status, bytes, duration_s.
REQUESTS = [
    (("127.0.0.1", 51234), "GET", "/items?q=%20x", "1.1", 200, 1234, 0.0125),
    (None, "POST", "/upload", "1.0", 413, 0, 0.0004),
    (("::1", 1), "G\x1bET", '/a\r\n"forged"?x=\x00\\', "2", 500, 7, 1.5),
    (("10.0.0.1", 40000), "GET", "/café/ünï?é=1", "1.1", 404, 9, 0.002),
]


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    saved = []
    for name in (LOGGER_NAME, ACCESS_LOGGER_NAME):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    yield
    configure_logging("info", "text")
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def lines_both_ways(tmp_path: Path, fmt: str, json_lines: bool) -> tuple[list[str], list[str]]:
    """The REQUESTS' lines through logging (a log file), then through the fast path."""
    kind = "json" if json_lines else "text"
    slow_path, fast_path = tmp_path / "logging.log", tmp_path / "fast.log"
    configure_logging("info", kind, log_file=str(slow_path))
    slow = AccessLogger(fmt, json=json_lines)
    for request in REQUESTS:
        log_request(slow, *request)
    configure_logging("info", kind, log_file=str(fast_path))
    fd_of = log_stream_fd()
    assert fd_of is not None

    async def fast_lines() -> None:
        fast = AccessLogger(fmt, json=json_lines, out=AccessBuffer(fd_of, 65536, 60.0))
        for request in REQUESTS:
            log_request(fast, *request)
        fast.flush()

    asyncio.run(fast_lines())
    return slow_path.read_text().splitlines(), fast_path.read_text().splitlines()


# Formats a JSON line's message is rendered straight into JSON for (strings shown as they
# are), then formats it is rendered for and then escaped (a repr, widths on strings).
FORMATS = [
    DEFAULT_ACCESS_LOG_FORMAT,
    "%(method)s %(path)s %(status)d",
    "%(status)s",
    '\\ "quoted" \t %(request_line)s %(status)5d %(bytes)-4d|%(duration_ms)08.2f',
    "100%% %(client)s %%(path)s %(path)r %(status)s%%",
    "%(path)-12s|%(client)30s %(status)03d %(method).2s",
]


@pytest.mark.usefixtures("restore_loggers")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_text_line_is_the_line_logging_writes(tmp_path: Path, fmt: str) -> None:
    slow, fast = lines_both_ways(tmp_path, fmt, json_lines=False)
    assert len(fast) == len(REQUESTS)
    assert all(TEXT_STAMP.match(line) for line in fast)
    assert [TEXT_STAMP.sub("", line) for line in fast] == [
        TEXT_STAMP.sub("", line) for line in slow
    ]
    assert f"[{os.getpid()}] INFO serve.access: " in fast[0]
    if fmt == DEFAULT_ACCESS_LOG_FORMAT:
        assert 'G\\x1bET /a\\x0d\\x0a"forged"' in fast[2]


@pytest.mark.usefixtures("restore_loggers")
def test_a_json_line_is_the_line_logging_writes(tmp_path: Path) -> None:
    slow, fast = lines_both_ways(tmp_path, DEFAULT_ACCESS_LOG_FORMAT, json_lines=True)
    assert len(fast) == len(REQUESTS)
    assert all(JSON_STAMP.match(line) for line in fast)
    # Byte for byte, key order and spacing included, but for the time and the spelling of
    # the duration: to the microsecond always, where logging's json.dumps drops zeros.
    assert [DURATION.sub("", JSON_STAMP.sub("", line)) for line in fast] == [
        DURATION.sub("", JSON_STAMP.sub("", line)) for line in slow
    ]
    assert [json.loads(line)["duration_ms"] for line in fast] == [
        json.loads(line)["duration_ms"] for line in slow
    ]
    assert [DURATION.findall(line) for line in fast] == [
        ["12.500"],
        ["0.400"],
        ["1500.000"],
        ["2.000"],
    ]
    entry = json.loads(fast[2])
    assert entry["request_line"] == 'G\\x1bET /a\\x0d\\x0a"forged"?x=\\x00\\ HTTP/2'
    assert entry["path"] == '/a\\x0d\\x0a"forged"'
    assert (entry["status"], entry["bytes"], entry["duration_ms"]) == (500, 7, 1500.0)


@pytest.mark.usefixtures("restore_loggers")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_json_line_in_any_format_is_the_line_logging_writes(tmp_path: Path, fmt: str) -> None:
    slow, fast = lines_both_ways(tmp_path, fmt, json_lines=True)
    assert len(fast) == len(REQUESTS)
    assert [DURATION.sub("", JSON_STAMP.sub("", line)) for line in fast] == [
        DURATION.sub("", JSON_STAMP.sub("", line)) for line in slow
    ]
    messages = [json.loads(line)["msg"] for line in fast]
    assert messages == [json.loads(line)["msg"] for line in slow]
    if fmt == FORMATS[3]:
        assert messages[2].startswith('\\ "quoted" \t G\\x1bET /a\\x0d\\x0a"forged"?x=')


@pytest.mark.usefixtures("restore_loggers")
def test_a_text_line_shows_the_second_it_was_written_in(tmp_path: Path) -> None:
    # The clock is read once a second, not per line: lines written after a second starts
    # still show that second, not the one the logger last read.
    log_path = tmp_path / "access.log"
    configure_logging("info", "text", log_file=str(log_path))
    fd_of = log_stream_fd()
    assert fd_of is not None
    seconds: list[tuple[int, int]] = []

    async def write_lines() -> None:
        access = AccessLogger("%(status)s", json=False, out=AccessBuffer(fd_of, 65536, 60.0))
        for _ in range(3):
            for _ in range(2):
                before = time.time()
                log_request(access, None, "GET", "/", "1.1", 200, 0, 0.001)
                seconds.append((int(before), int(time.time())))
            now = time.time()
            await asyncio.sleep(int(now) + 1 - now + 0.02)
        access.flush()

    asyncio.run(write_lines())
    stamps = [TEXT_STAMP.match(line) for line in log_path.read_text().splitlines()]
    shown = [int(time.mktime(time.strptime(s[0].strip(), TEXT_DATE_FORMAT))) for s in stamps if s]
    assert len(shown) == len(seconds) == 6
    assert all(low <= second <= high for second, (low, high) in zip(shown, seconds, strict=True))
    assert len(set(shown)) >= 3


@pytest.mark.usefixtures("restore_loggers")
@pytest.mark.parametrize("json_lines", [False, True])
def test_a_response_without_a_request_head_shows_dashes_both_ways(
    tmp_path: Path, json_lines: bool
) -> None:
    kind = "json" if json_lines else "text"
    fmt = DEFAULT_ACCESS_LOG_FORMAT + " %(method)s %(path)s"
    slow_path, fast_path = tmp_path / "logging.log", tmp_path / "fast.log"
    configure_logging("info", kind, log_file=str(slow_path))
    AccessLogger(fmt, json=json_lines).log_without_head(("10.0.0.9", 7), 431, 31)
    configure_logging("info", kind, log_file=str(fast_path))
    fd_of = log_stream_fd()
    assert fd_of is not None

    async def fast_lines() -> None:
        fast = AccessLogger(fmt, json=json_lines, out=AccessBuffer(fd_of, 65536, 60.0))
        # More distinct requests than the memo keeps: it starts again, and still knows
        # what a response without a head shows.
        for n in range(5000):
            log_request(fast, None, "GET", f"/{n}", "1.1", 200, 0, 0.001)
        fast.log_without_head(("10.0.0.9", 7), 431, 31)
        fast.flush()

    asyncio.run(fast_lines())
    slow, fast = slow_path.read_text().splitlines(), fast_path.read_text().splitlines()[-1:]
    stamp = JSON_STAMP if json_lines else TEXT_STAMP

    def unstamped(lines: list[str]) -> list[str]:
        # The duration's spelling aside, as in the test of JSON lines above.
        return [DURATION.sub("", stamp.sub("", line)) for line in lines]

    assert unstamped(fast) == unstamped(slow)
    if json_lines:
        entry = json.loads(fast[0])
        assert entry["msg"] == '10.0.0.9:7 - "-" 431 31 0.0ms - -'
        assert (entry["request_line"], entry["method"], entry["path"]) == ("-", "-", "-")
        assert (entry["status"], entry["bytes"], entry["duration_ms"]) == (431, 31, 0.0)
    else:
        assert fast[0].endswith('serve.access: 10.0.0.9:7 - "-" 431 31 0.0ms - -')


def test_pieces_end_at_line_ends_and_stay_within_the_limit() -> None:
    lines = [b"%d %s\n" % (n, b"x" * (n * 37 % 300)) for n in range(200)]
    data = b"".join(lines)
    pieces = line_pieces(data, 1000)
    assert [data[start:end] for start, end in pieces] and b"".join(
        data[start:end] for start, end in pieces
    ) == data
    for start, end in pieces:
        assert end - start <= 1000
        assert data[end - 1 : end] == b"\n"
        assert start == 0 or data[start - 1 : start] == b"\n"


def test_a_line_longer_than_the_limit_goes_alone_and_whole() -> None:
    data = b"short\n" + b"y" * 5000 + b"\n" + b"tail\n"
    assert [data[s:e] for s, e in line_pieces(data, 4096)] == [
        b"short\n",
        b"y" * 5000 + b"\n",
        b"tail\n",
    ]
    assert line_pieces(data, len(data)) == [(0, len(data))]


class Target:
    """A file the buffer writes to, counting how often it was asked for the descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.asked = 0

    def fd_of(self) -> int:
        self.asked += 1
        return self.fd

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    target = Target(tmp_path / "access.log")
    yield target
    os.close(target.fd)


def run(scenario: Callable[[], object]) -> None:
    async def main() -> None:
        result = scenario()
        if asyncio.iscoroutine(result):
            await result

    asyncio.run(main())


def test_lines_wait_until_the_buffer_is_full_then_go_in_one_write(target: Target) -> None:
    def scenario() -> None:
        buffer = AccessBuffer(target.fd_of, 100, 60.0)
        for n in range(4):
            buffer.append(f"line {n} {'x' * 12}\n")
        assert target.lines() == []
        buffer.append(f"line 4 {'x' * 12}\n")
        assert target.asked == 1
        assert target.lines() == [f"line {n} {'x' * 12}" for n in range(5)]
        buffer.append("after\n")
        buffer.flush()
        assert target.lines()[-1] == "after"

    run(scenario)


def test_size_zero_writes_each_line_at_once(target: Target) -> None:
    def scenario() -> None:
        buffer = AccessBuffer(target.fd_of, 0, 60.0)
        buffer.append("one\n")
        assert target.lines() == ["one"]
        buffer.append("two\n")
        assert target.lines() == ["one", "two"]

    run(scenario)


def test_the_interval_flushes_a_buffer_that_is_not_full(target: Target) -> None:
    async def scenario() -> None:
        buffer = AccessBuffer(target.fd_of, 65536, 0.05)
        buffer.append("first\n")
        buffer.append("second\n")
        assert target.lines() == []
        deadline = time.monotonic() + 10
        while not target.lines() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert target.lines() == ["first", "second"]
        assert target.asked == 1

    run(scenario)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failed_write_is_reported_once_and_later_lines_still_go(target: Target) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    fds = [write_end]

    def scenario() -> None:
        buffer = AccessBuffer(lambda: fds[0], 0, 60.0)
        buffer.append("lost 1\n")
        buffer.append("lost 2\n")
        fds[0] = target.fd
        buffer.append("kept\n")

    collect = Collect()
    logging.getLogger(LOGGER_NAME).addHandler(collect)
    try:
        run(scenario)
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(collect)
        os.close(write_end)
    assert len(collect.messages) == 1
    assert collect.messages[0].startswith("cannot write the access log, lines lost: ")
    assert target.lines() == ["kept"]


def test_a_flush_to_a_pipe_holds_whole_lines_in_order() -> None:
    read_end, write_end = os.pipe()
    lines = [f"{n:04d} {'z' * (n * 53 % 700)}\n" for n in range(40)]

    def scenario() -> None:
        buffer = AccessBuffer(lambda: write_end, 1 << 20, 60.0)
        for line in lines:
            buffer.append(line)
        buffer.flush()

    # The pipe's buffer (64 KiB) takes the whole batch without a reader.
    assert sum(map(len, lines)) < 65536 and sum(map(len, lines)) > PIPE_BUF
    run(scenario)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read().decode() == "".join(lines)


@pytest.mark.usefixtures("restore_loggers")
@pytest.mark.parametrize("json_lines", [False, True])
def test_remembered_clients_and_methods_start_again_and_lines_stay_right(
    tmp_path: Path, json_lines: bool
) -> None:
    # More distinct clients and methods than a memo keeps: each is forgotten in turn, and
    # every line still names its own request's client and method.
    kind = "json" if json_lines else "text"
    log_path = tmp_path / "access.log"
    configure_logging("info", kind, log_file=str(log_path))
    fd_of = log_stream_fd()
    assert fd_of is not None
    requests = [((f"10.0.{n // 256}.{n % 256}", n), f"M{n}\n") for n in range(5000)]

    async def write_lines() -> None:
        access = AccessLogger(
            "%(client)s %(method)s", json=json_lines, out=AccessBuffer(fd_of, 65536, 60.0)
        )
        for client, method in [*requests, *requests[:3]]:
            log_request(access, client, method, "/", "1.1", 200, 0, 0.001)
        access.flush()

    asyncio.run(write_lines())
    lines = log_path.read_text().splitlines()
    if json_lines:
        lines = [json.loads(line)["msg"] for line in lines]
    expected = [f"{c[0]}:{c[1]} {m[:-1]}\\x0a" for c, m in [*requests, *requests[:3]]]
    assert [line.split("serve.access: ")[-1] for line in lines] == expected
