"""The master's metrics listener on real sockets, driven the way the arbiter drives it: one
thread polls a selector and calls the callbacks its keys carry."""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve.supervisor.fleet import (
    Phase,
    Policy,
    SlotRecord,
    SupervisorState,
    WorkerRecord,
    WorkerState,
)
from serve.supervisor.metrics import (
    CLIENT_TIMEOUT_S,
    MAX_CLIENTS,
    MAX_HEAD_BYTES,
    Endpoints,
    MetricsServer,
    parse_head,
)
from serve.supervisor.metrics_series import build_registry
from serve.supervisor.sockets import BindError
from tests.conftest import wait_until

READY = SupervisorState(
    policy=Policy(),
    slots={0: SlotRecord(due=None)},
    workers={100: WorkerRecord(100, 0, 1, WorkerState.READY, 0.0, 0.0, requests=7)},
    phase=Phase.SERVING,
)


class Master:
    """A selector loop that owns a MetricsServer, as the arbiter does."""

    def __init__(self) -> None:
        self.state = READY
        self.selector = selectors.PollSelector()
        self.server = MetricsServer("127.0.0.1:0")
        self.server.attach(self.selector, lambda: self.state)

    @property
    def port(self) -> int:
        port: int = self.server.sockets()[0].getsockname()[1]
        return port

    def pump(self, until: Callable[[], bool]) -> None:
        def turn() -> bool:
            for key, mask in self.selector.select(0.01):
                key.data(mask)
            self.server.expire(time.monotonic())
            return until()

        wait_until(turn, timeout=10.0, interval=0.0)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        return sock

    def exchange(self, data: bytes, sock: socket.socket | None = None) -> bytes:
        """Send `data` and pump until the server closed the connection; all it sent."""
        sock = sock or self.connect()
        sock.sendall(data)
        chunks: list[bytes] = []
        self.pump(lambda: closed(sock, chunks))
        sock.close()
        return b"".join(chunks)


def closed(sock: socket.socket, chunks: list[bytes] | None = None) -> bool:
    """Read what is there; True once the peer closed."""
    try:
        chunk = sock.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    if chunks is not None:
        chunks.append(chunk)
    return not chunk


@pytest.fixture
def master() -> Iterator[Master]:
    master = Master()
    yield master
    master.server.close()
    master.selector.close()


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(master: Master, path: str, method: str = "GET", extra: str = "") -> bytes:
    return master.exchange(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def test_metrics_is_prometheus_text_from_the_state_at_each_scrape(master: Master) -> None:
    status, headers, body = split(get(master, "/metrics"))
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["serve_workers"].type == "gauge"
    master.state = replace(master.state, restarts={"crash": 3})
    body = split(get(master, "/metrics?name[]=x"))[2]
    [crash] = [
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "serve_worker_restarts_total" and sample.labels["reason"] == "crash"
    ]
    assert crash == 3


def test_openmetrics_when_the_scraper_asks_for_it(master: Master) -> None:
    accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n"
    status, headers, body = split(get(master, "/metrics", extra=accept))
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_head_has_the_headers_and_no_body(master: Master) -> None:
    status, headers, body = split(get(master, "/healthz", method="HEAD"))
    assert (status, headers["content-length"], body) == (200, "3", b"")


def test_readyz_follows_the_state_and_healthz_stays_up(master: Master) -> None:
    assert split(get(master, "/readyz"))[0] == 200
    master.state = replace(master.state, phase=Phase.DELAYING)
    assert split(get(master, "/readyz"))[:3:2] == (503, b"not ready\n")
    assert split(get(master, "/healthz"))[:3:2] == (200, b"ok\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /metrics\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES, 431),
    ],
)
def test_bad_requests_get_an_error_and_a_close(
    master: Master, request_bytes: bytes, status: int
) -> None:
    assert split(master.exchange(request_bytes))[0] == status


def test_method_not_allowed_says_what_is(master: Master) -> None:
    headers = split(get(master, "/readyz", method="DELETE"))[1]
    assert headers["allow"] == "GET, HEAD"


def test_a_request_in_pieces_is_answered_once_complete(master: Master) -> None:
    sock = master.connect()
    sock.sendall(b"GET /hea")
    master.pump(lambda: not closed(sock))
    assert split(master.exchange(b"lthz HTTP/1.1\r\n\r\n", sock))[0] == 200


def test_a_stalled_client_does_not_delay_others_and_is_closed_at_its_deadline(
    master: Master,
) -> None:
    stalled = master.connect()
    stalled.sendall(b"GET /metrics HTTP/1.1\r\n")
    assert split(get(master, "/healthz"))[0] == 200
    deadline = master.server.next_deadline()
    assert deadline is not None
    assert deadline <= time.monotonic() + CLIENT_TIMEOUT_S
    assert not closed(stalled)
    master.server.expire(deadline)
    master.pump(lambda: closed(stalled))
    assert master.server.next_deadline() is None
    stalled.close()


def test_clients_beyond_the_limit_are_closed_at_accept(master: Master) -> None:
    idle = [master.connect() for _ in range(MAX_CLIENTS)]
    master.pump(lambda: len(master.server.sockets()) == MAX_CLIENTS + 1)
    extra = master.connect()
    master.pump(lambda: closed(extra))
    assert len(master.server.sockets()) == MAX_CLIENTS + 1
    for sock in [*idle, extra]:
        sock.close()
    # Closed by the client: each read sees EOF and frees its place.
    master.pump(lambda: len(master.server.sockets()) == 1)
    assert split(get(master, "/healthz"))[0] == 200


def test_a_failing_collector_is_a_500_not_a_dead_master(master: Master) -> None:
    def broken() -> SupervisorState:
        raise RuntimeError("collector bug")

    endpoints = Endpoints(build_registry(broken, 0.0), lambda: True, lambda: True)
    assert endpoints.answer("GET", "/metrics", "").status == 500
    assert endpoints.answer("GET", "/healthz", "").status == 200


def test_a_handed_over_listener_is_adopted_and_suspend_closes_only_our_copy(
    master: Master,
) -> None:
    port = master.port
    handed = master.server.handover()
    assert handed is not None
    listener, bind = handed
    assert bind == "127.0.0.1:0"
    # What the USR2 master gets: a duplicate of the same kernel socket.
    successor = MetricsServer(bind, inherited_fd=os.dup(listener.sock.fileno()))
    try:
        master.server.suspend()
        assert master.server.sockets() == []
        assert master.server.handover() is None
        [adopted] = successor.sockets()
        assert adopted.getsockname()[1] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        successor.close()


def test_clients_accepted_before_the_master_exits_get_their_answer(master: Master) -> None:
    # The master's last loop turn can accept a client (a probe during a USR2 upgrade) that
    # it never reads: its exit answers it rather than closing it unanswered.
    whole, partial, silent = master.connect(), master.connect(), master.connect()
    master.pump(lambda: len(master.server.sockets()) == 4)
    partial.sendall(b"GET /readyz HTTP/1.1\r\n")
    master.pump(lambda: not closed(partial))
    whole.sendall(b"GET /readyz HTTP/1.1\r\n\r\n")
    partial.sendall(b"Host: x\r\n\r\n")
    master.server.close()
    assert master.server.sockets() == []
    for sock in (whole, partial):
        chunks: list[bytes] = []
        wait_until(lambda sock=sock, chunks=chunks: closed(sock, chunks))
        assert split(b"".join(chunks))[:3:2] == (200, b"ready\n")
    # Silent until the exit: closed, not waited for beyond the bound.
    wait_until(lambda: closed(silent))
    for sock in (whole, partial, silent):
        sock.close()


def test_binding_a_taken_address_is_a_bind_error(master: Master) -> None:
    with pytest.raises(BindError, match=f"metrics.bind: cannot bind 127.0.0.1:{master.port}"):
        MetricsServer(f"127.0.0.1:{master.port}")


def test_sockets_lists_the_listener_and_open_clients(master: Master) -> None:
    client = master.connect()
    master.pump(lambda: len(master.server.sockets()) == 2)
    assert master.server.sockets()[0].getsockname()[1] == master.port
    client.close()


@pytest.mark.parametrize(
    ("head", "parsed"),
    [
        (b"GET /metrics HTTP/1.1\r\nAccept: text/plain", ("GET", "/metrics", "text/plain")),
        (b"HEAD /x?y HTTP/1.0\r\nACCEPT:  a/b ", ("HEAD", "/x?y", "a/b")),
        (b"GET /metrics HTTP/2\r\n", None),
        (b"GET  /metrics HTTP/1.1", None),
    ],
)
def test_parse_head(head: bytes, parsed: tuple[str, str, str] | None) -> None:
    assert parse_head(head) == parsed
