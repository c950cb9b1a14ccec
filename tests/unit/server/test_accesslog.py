"""The access log's fast path: lines rendered as logging renders them, batched, whole."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.server.access_buffer import AccessBuffer
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


Request = tuple[tuple[str, int] | None, str, str, str, int, int, float]


def lines_both_ways(
    tmp_path: Path, fmt: str, json_lines: bool, requests: list[Request] = REQUESTS
) -> tuple[list[str], list[str]]:
    """The requests' lines through logging (a log file), then through the fast path."""
    kind = "json" if json_lines else "text"
    slow_path, fast_path = tmp_path / "logging.log", tmp_path / "fast.log"
    configure_logging("info", kind, log_file=str(slow_path))
    slow = AccessLogger(fmt, json=json_lines)
    for request in requests:
        log_request(slow, *request)
    configure_logging("info", kind, log_file=str(fast_path))
    fd_of = log_stream_fd()
    assert fd_of is not None

    async def fast_lines() -> None:
        fast = AccessLogger(fmt, json=json_lines, out=AccessBuffer(fd_of, 65536, 60.0))
        for request in requests:
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
@pytest.mark.parametrize("json_lines", [False, True])
def test_a_request_repeated_shows_its_own_duration_status_and_bytes(
    tmp_path: Path, json_lines: bool
) -> None:
    # Few distinct lines, so the fast path renders most from pieces it remembered; each
    # request differs from the last in its duration and one or more other fields.
    requests: list[Request] = [
        (("10.0.0.1", 1000 + n % 3), "GET" if n % 4 else "POST", "/b?x=1" if n % 2 else "/a",
         "1.1" if n % 5 else "2", 200 if n % 7 else 404, 10 * (n % 4), n / 1000 + 0.0001)
        for n in range(600)
    ]  # fmt: skip
    slow, fast = lines_both_ways(tmp_path, DEFAULT_ACCESS_LOG_FORMAT, json_lines, requests)
    assert len(fast) == len(requests)
    if json_lines:
        fast, slow = (
            [DURATION.sub("", line) for line in fast],
            [DURATION.sub("", line) for line in slow],
        )
    stamp = JSON_STAMP if json_lines else TEXT_STAMP
    assert [stamp.sub("", line) for line in fast] == [stamp.sub("", line) for line in slow]
    # Request 427 repeats request 7 but for its duration.
    expected = '10.0.0.1:1001 - "GET /b?x=1 HTTP/1.1" 404 30 {}ms'
    assert expected.format("7.1") in fast[7].replace("\\", "")
    assert expected.format("427.1") in fast[427].replace("\\", "")


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


@pytest.mark.parametrize("json_lines", [False, True])
def test_long_targets_that_never_repeat_are_not_remembered(json_lines: bool) -> None:
    # Each request once or twice, each with its own 4 KiB path: remembering their request
    # lines and lines would keep about 50 MB; rendering them every time keeps nothing.
    targets = [f"/{n:05d}" + "x" * 4096 for n in range(3000)]
    fd = os.open(os.devnull, os.O_WRONLY)

    async def write_lines() -> int:
        access = AccessLogger(
            DEFAULT_ACCESS_LOG_FORMAT, json=json_lines, out=AccessBuffer(lambda: fd, 65536, 60.0)
        )
        log_request(access, ("10.0.0.1", 1), "GET", "/", "1.1", 200, 2, 0.001)
        tracemalloc.start()
        try:
            for target in [*targets, *targets[::2]]:
                log_request(access, ("10.0.0.1", 1), "GET", target, "1.1", 200, 2, 0.001)
            access.flush()
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    try:
        held = asyncio.run(write_lines())
    finally:
        os.close(fd)
    assert held < 1 << 20
