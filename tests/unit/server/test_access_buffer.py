"""The access log's buffer: lines batched into few writes, each write whole lines."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serve.server.access_buffer import PIPE_BUF, AccessBuffer, line_pieces
from serve.server.logs import LOGGER_NAME


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
