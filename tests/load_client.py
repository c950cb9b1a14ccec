"""Loopback load clients shared by the supervisor load tests, the chaos driver and the soak.

Rules of a client: it never retries. Each thread sends one request at a time and counts
every request that gets no complete, correct 200 as a failure. When a response says
`Connection: close` (a draining worker, or a request that asked for it) the next request
goes on a new connection: that is not a retry, the previous request was answered. Loops
are bounded (a request cap per client) and stopped by an event.

Every answer must carry the pid of the worker that served it in an `x-pid` header (the
apps in tests/apps do), so a failure on a reused connection can be pinned on the worker
that held it. Bodies are framed by Content-Length or chunked encoding; nothing else.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.conftest import wait_until

# The most requests one client sends: the bound of every load loop.
MAX_REQUESTS_PER_CLIENT = 200_000
# Longer than a blocked worker lives (worker_timeout, then SIGABRT), so a request held by
# one fails when that worker dies, not at this timeout.
SOCKET_TIMEOUT_S = 30.0
_RECV_BYTES = 262_144


@dataclass(frozen=True)
class Request:
    """One request shape and what a correct answer to it looks like."""

    path: str = "/"
    method: str = "GET"
    body: bytes = b""
    # The exact body expected back, or only its length; None: any body.
    expect_body: bytes | None = None
    expect_length: int | None = None

    def encode(self, close: bool) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: test\r\n"
        if self.body or self.method == "POST":
            head += f"Content-Length: {len(self.body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        return (head + "\r\n").encode() + self.body

    def check(self, body: bytes) -> None:
        if self.expect_body is not None and body != self.expect_body:
            raise ValueError(f"{self.path}: body {body[:40]!r} is not {self.expect_body[:40]!r}")
        if self.expect_length is not None and len(body) != self.expect_length:
            raise ValueError(f"{self.path}: {len(body)} body bytes, not {self.expect_length}")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def pid(self) -> int:
        return int(self.headers.get("x-pid", "0"))

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class ResponseReader:
    """Reads HTTP/1.1 responses from one socket, keeping what follows one for the next."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self, what: str) -> None:
        chunk = self._sock.recv(_RECV_BYTES)
        if not chunk:
            raise ValueError(f"connection closed {what} ({len(self._buffer)} bytes buffered)")
        self._buffer += chunk

    def _line(self, what: str) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill(what)
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _exact(self, size: int, what: str) -> bytes:
        while len(self._buffer) < size:
            self._fill(what)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read(self) -> Answer:
        status_line = self._line("before a response").decode("latin-1")
        headers: dict[str, str] = {}
        while line := self._line("inside a response head"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"not a status line: {status_line!r}")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            body = self._exact(int(headers.get("content-length", "0")), "inside a body")
        return Answer(int(parts[1]), headers, body)

    def _chunked(self) -> bytes:
        chunks = []
        while size := int(self._line("inside a chunk size").split(b";")[0], 16):
            chunks.append(self._exact(size, "inside a chunk"))
            self._exact(2, "after a chunk")
        while self._line("inside the trailers"):
            pass
        return b"".join(chunks)


@dataclass(frozen=True)
class Failure:
    error: str
    # The pid that answered the previous request on this connection (0: a new connection).
    last_pid: int
    # time.monotonic() when the request was sent and when it failed.
    started: float = 0.0
    failed: float = 0.0
    # The connection itself could not be opened.
    connect: bool = False


# Picks the next request and whether it asks for `Connection: close`.
Plan = Callable[[random.Random], tuple[Request, bool]]


def fixed(request: Request, close: bool = False) -> Plan:
    return lambda rng: (request, close)


@dataclass
class LoadClient:
    """One client thread; see the module docstring for its rules."""

    port: int
    stop: threading.Event
    plan: Plan = field(default_factory=lambda: fixed(Request()))
    limit: int = MAX_REQUESTS_PER_CLIENT
    seed: int = 0
    ok: int = 0
    connections: int = 0
    received: int = 0
    pids: set[int] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)

    def run(self) -> None:
        rng = random.Random(self.seed)
        sock: socket.socket | None = None
        reader: ResponseReader | None = None
        last_pid = 0
        while not self.stop.is_set() and self.ok + len(self.failures) < self.limit:
            request, close = self.plan(rng)
            started = time.monotonic()
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), SOCKET_TIMEOUT_S)
                except OSError as exc:
                    self.failures.append(Failure(repr(exc), 0, started, time.monotonic(), True))
                    continue
                reader, last_pid = ResponseReader(sock), 0
                self.connections += 1
            assert reader is not None
            try:
                sock.sendall(request.encode(close))
                answer = reader.read()
                if answer.status != 200:
                    raise ValueError(f"{request.path}: status {answer.status}")
                request.check(answer.body)
            except (OSError, ValueError) as exc:
                self.failures.append(Failure(repr(exc), last_pid, started, time.monotonic()))
                sock.close()
                sock = None
                continue
            self.ok += 1
            self.received += len(answer.body)
            self.pids.add(answer.pid)
            last_pid = answer.pid
            if close or answer.closes:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()


def served_by_fresh_connection(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(Request().encode(close=True))
        return ResponseReader(sock).read().pid


@dataclass
class Load:
    clients: list[LoadClient]

    @property
    def ok(self) -> int:
        return sum(client.ok for client in self.clients)

    @property
    def failures(self) -> list[Failure]:
        return [failure for client in self.clients for failure in client.failures]

    @property
    def pids(self) -> set[int]:
        return {pid for client in self.clients for pid in client.pids}

    @property
    def received(self) -> int:
        return sum(client.received for client in self.clients)

    def wait_for_more(self, requests: int = 50) -> None:
        """Wait until `requests` more requests were answered from now on."""
        target = self.ok + requests
        wait_until(lambda: self.ok >= target)


@contextmanager
def load(
    port: int,
    clients: int = 4,
    *,
    path: str = "/",
    limit: int = MAX_REQUESTS_PER_CLIENT,
    warmup: int = 20,
    plans: list[Plan] | None = None,
    seed: int = 0,
) -> Iterator[Load]:
    """Run `clients` LoadClients (or one per plan in `plans`); yield once `warmup` requests
    per client got answers. Client i draws its requests from Random(seed + i)."""
    stop = threading.Event()
    chosen = plans if plans is not None else [fixed(Request(path))] * clients
    workers = [LoadClient(port, stop, plan, limit, seed + i) for i, plan in enumerate(chosen)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    result = Load(workers)
    try:
        wait_until(lambda: result.ok + len(result.failures) >= warmup * len(workers))
        yield result
    finally:
        stop.set()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT_S + 5)
    assert not any(thread.is_alive() for thread in threads)
