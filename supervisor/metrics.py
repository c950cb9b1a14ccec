"""The master's HTTP endpoint: GET /metrics, /healthz and /readyz, answered by its own loop.

Rules:
- No thread and no event loop library: the master stays single-threaded so that fork stays
  safe. The listener and each client socket are non-blocking and registered in the
  arbiter's selector with a callback as their key's data; the arbiter calls it with the
  event mask when poll() reports the socket. accept, recv and send take only what is there.
- A client has CLIENT_TIMEOUT_S from its accept to send a request head and take the whole
  answer; then it is closed (expire(), driven by next_deadline()), so a slow or stalled
  scraper costs one socket for a while, never the loop. At most MAX_CLIENTS are open at once;
  those beyond are closed as soon as they are accepted.
- One request per connection (`Connection: close`): GET or HEAD, a head of at most
  MAX_HEAD_BYTES, no body read. /metrics is prometheus_client's exposition of the registry
  (text format, or OpenMetrics when the Accept header asks for it; the series are in
  metrics_series.py); /healthz (liveness) is 200 while the loop answers, unless
  fleet.is_live() finds the workers crash-looping (503); /readyz is 200 or 503 as
  fleet.answers_ready() says of the state at that moment.
- USR2: the listener goes to the new master with the app's sockets (handover()), so the
  address never stops answering. Both masters accept on it until the new one takes over;
  then the old one closes its copy (suspend()) and lets its clients finish.
- At the master's exit (close()) the clients it accepted are answered, blocking for at most
  FINISH_S in all: one accepted in the loop's last turn (a probe during an upgrade) would
  otherwise see its connection closed without an answer.
- The collectors run inside the loop; a failure in one is a 500 for that scrape, logged,
  never the master's death.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from serve.supervisor.fleet import SupervisorState, answers_ready, is_live
from serve.supervisor.metrics_series import build_registry
from serve.supervisor.sockets import BindError, Listener, adopt_fd, bind_one, close_listeners

logger = logging.getLogger("serve.master")

CLIENT_TIMEOUT_S = 5.0
# At the master's exit, what the clients it accepted get, in all, to be answered.
FINISH_S = 1.0
MAX_CLIENTS = 16
MAX_HEAD_BYTES = 8192
BACKLOG = 64
# A listener that cannot accept (out of file descriptors) is left alone for this long,
# or poll() would report it readable again at once and the loop would spin.
ACCEPT_PAUSE_S = 1.0
_RECV_BYTES = 4096
_TEXT = "text/plain; charset=utf-8"
_PATHS = ("/metrics", "/healthz", "/readyz")
_CRASH_LOOPING = b"crash-looping: workers keep dying before they are stable\n"
# Callback stored as a selector key's data: called with the ready event mask.
Callback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, head_only: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


class Endpoints:
    """What each path answers; pure but for the collectors the registry runs."""

    def __init__(
        self, registry: CollectorRegistry, ready: Callable[[], bool], live: Callable[[], bool]
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._live = live

    def answer(self, method: str, target: str, accept: str) -> Answer:
        path = target.partition("?")[0]
        if path not in _PATHS:
            return Answer(404, b"not found: try /metrics, /healthz or /readyz\n")
        if method not in ("GET", "HEAD"):
            return Answer(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        if path == "/healthz":
            return Answer(200, b"ok\n") if self._live() else Answer(503, _CRASH_LOOPING)
        if path == "/readyz":
            return Answer(200, b"ready\n") if self._ready() else Answer(503, b"not ready\n")
        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(self._registry)
        except Exception:
            # The one boundary between a collector's bug and the master's loop.
            logger.exception("cannot render /metrics")
            return Answer(500, b"cannot render the metrics; see the master's log\n")
        return Answer(200, body, content_type)


def parse_head(head: bytes) -> tuple[str, str, str] | None:
    """(method, target, Accept header) of a request head without its blank line; None when
    it is not an HTTP/1.x request."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    return parts[0], parts[1], accept


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    head: bytes = b""
    # The bytes still to send once the request is answered; None while reading it.
    out: bytes | None = None


class MetricsServer:
    """The listener and its clients; attach() puts them in the master's selector."""

    def __init__(self, bind: str, inherited_fd: int | None = None) -> None:
        """Bind `bind` (HOST:PORT), or adopt `inherited_fd`, the listener an upgrading
        master handed over for the same `bind`; raises BindError naming the address."""
        self._bind = bind
        self._clients: list[_Client] = []
        self._selector: selectors.BaseSelector | None = None
        self._endpoints: Endpoints | None = None
        self._accept_paused_until: float | None = None
        try:
            if inherited_fd is None:
                listener = bind_one(bind, BACKLOG)
            else:
                listener = adopt_fd(inherited_fd, BACKLOG)
        except BindError as exc:
            raise BindError(f"metrics.bind: {exc}") from None
        listener.sock.setblocking(False)
        self._listener: Listener | None = listener
        logger.info("Metrics on %s (/metrics, /healthz, /readyz)", listener.url)

    def attach(
        self, selector: selectors.BaseSelector, state: Callable[[], SupervisorState]
    ) -> None:
        """Serve from `selector`'s loop the series and readiness of `state()` at each request."""
        self._selector = selector
        registry = build_registry(state, time.monotonic())
        self._endpoints = Endpoints(
            registry, lambda: answers_ready(state()), lambda: is_live(state(), time.monotonic())
        )
        self._watch_listener()

    def _watch_listener(self) -> None:
        if self._selector is not None and self._listener is not None:
            self._selector.register(self._listener.sock, selectors.EVENT_READ, self._accept)

    def sockets(self) -> list[socket.socket]:
        """Every socket this holds: a forked worker must close its copies."""
        listener = [self._listener.sock] if self._listener is not None else []
        return listener + [client.sock for client in self._clients]

    def next_deadline(self) -> float | None:
        times = [client.deadline for client in self._clients]
        if self._accept_paused_until is not None:
            times.append(self._accept_paused_until)
        return min(times, default=None)

    def expire(self, now: float) -> None:
        """Close the clients past their deadline; accept again after a pause."""
        for client in [c for c in self._clients if c.deadline <= now]:
            self._drop(client)
        paused = self._accept_paused_until
        if paused is not None and paused <= now:
            self._accept_paused_until = None
            self._watch_listener()

    def handover(self) -> tuple[Listener, str] | None:
        """The listener and the bind that named it, for a USR2 upgrade's new master."""
        return None if self._listener is None else (self._listener, self._bind)

    def suspend(self) -> None:
        """Stop accepting (the new master serves the listener now); clients finish."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if self._selector is not None and self._accept_paused_until is None:
            self._selector.unregister(listener.sock)
        self._accept_paused_until = None
        close_listeners([listener])

    def close(self) -> None:
        """Close every socket (the selector is closed, or about to be). The clients already
        accepted are answered first, within FINISH_S in all."""
        self._selector = None
        if self._listener is not None:
            close_listeners([self._listener])
            self._listener = None
        deadline = time.monotonic() + FINISH_S
        for client in self._clients:
            with contextlib.suppress(OSError):
                self._finish(client, deadline)
            client.sock.close()
        self._clients.clear()

    def _finish(self, client: _Client, deadline: float) -> None:
        """The rest of `client`'s request and its whole answer, blocking until `deadline`."""
        sock = client.sock
        while client.out is None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(_RECV_BYTES)
            if not data:
                return
            found = self._take(client, data)
            if found is not None:
                client.out = found[0].encode(found[1])
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(client.out)

    def _accept(self, mask: int) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ECONNABORTED:
                    self._pause_accepting(exc)
                    return
                continue
            if len(self._clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + CLIENT_TIMEOUT_S)
            self._clients.append(client)
            callback: Callback = functools.partial(self._serve, client)
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, callback)

    def _pause_accepting(self, exc: OSError) -> None:
        logger.warning("metrics: cannot accept: %s; retrying in %gs", exc, ACCEPT_PAUSE_S)
        if self._selector is not None and self._listener is not None:
            self._selector.unregister(self._listener.sock)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S

    def _serve(self, client: _Client, mask: int) -> None:
        if client.out is None:
            self._read(client)
        else:
            self._write(client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            self._drop(client)
            return
        found = self._take(client, data)
        if found is not None:
            self._respond(client, *found)

    def _take(self, client: _Client, data: bytes) -> tuple[Answer, bool] | None:
        """The answer, and whether it is to a HEAD, once `data` ends the request head."""
        client.head += data
        end = client.head.find(b"\r\n\r\n")
        if end < 0:
            if len(client.head) > MAX_HEAD_BYTES:
                return Answer(431, b"request head too large\n"), False
            return None
        request = parse_head(client.head[:end])
        if request is None:
            return Answer(400, b"bad request\n"), False
        method, target, accept = request
        assert self._endpoints is not None
        return self._endpoints.answer(method, target, accept), method == "HEAD"

    def _respond(self, client: _Client, answer: Answer, head_only: bool) -> None:
        client.out = answer.encode(head_only)
        assert self._selector is not None
        callback = self._selector.get_key(client.sock).data
        self._selector.modify(client.sock, selectors.EVENT_WRITE, callback)
        self._write(client)

    def _write(self, client: _Client) -> None:
        assert client.out is not None
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        self._clients.remove(client)
        if self._selector is not None:
            self._selector.unregister(client.sock)
        client.sock.close()
