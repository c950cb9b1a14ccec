"""The floor: the fastest HTTP/1.1 server Python on uvloop + httptools can be, without ASGI.

Run: python -m bench.floor --bind 127.0.0.1:8000 [--workers N]

Rules:
- No ASGI, no per-request objects beyond what httptools hands over: each route's response
  is pre-built bytes (one `transport.write`), rebuilt only when the Date header changes,
  once a second. `/echo` is the one response built per request (it carries the body).
- It is still a correct HTTP/1.1 origin server for the bench routes: keep-alive, pipelining,
  `Connection: close` and HTTP/1.0 (via httptools' should_keep_alive), a Date header, a
  400 and close on a parse error, and reading paused while the write buffer is full.
- `--workers N` > 1 forks N children that share one listening socket (the same model as
  serve, uvicorn and gunicorn); the parent only waits and forwards SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
from email.utils import formatdate
from typing import cast

import httptools
import uvloop

from bench.app import DOWNLOAD, JSON_DOC, PLAINTEXT, STREAM_CHUNK, STREAM_CHUNKS

_JSON_BODY = json.dumps(JSON_DOC, separators=(",", ":")).encode()
_CHUNKED = b"".join(
    b"%x\r\n%s\r\n" % (len(STREAM_CHUNK), STREAM_CHUNK) for _ in range(STREAM_CHUNKS)
)
_ROUTES: dict[bytes, tuple[bytes, bytes]] = {
    # path -> (headers after the Date line, body); framing headers included.
    b"/": (
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(PLAINTEXT),
        PLAINTEXT,
    ),
    b"/json": (
        b"content-type: application/json\r\ncontent-length: %d\r\n" % len(_JSON_BODY),
        _JSON_BODY,
    ),
    b"/stream": (
        b"content-type: text/plain; charset=utf-8\r\ntransfer-encoding: chunked\r\n",
        _CHUNKED + b"0\r\n\r\n",
    ),
    b"/download": (
        b"content-type: application/octet-stream\r\ncontent-length: %d\r\n" % len(DOWNLOAD),
        DOWNLOAD,
    ),
}
_NOT_FOUND = (b"content-type: text/plain\r\ncontent-length: 9\r\n", b"not found")
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Responses:
    """Every canned response, keep-alive and close variants, for the current second."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.date_line = b""
        self.keep_alive: dict[bytes, bytes] = {}
        self.close: dict[bytes, bytes] = {}
        self._refresh()

    def _refresh(self) -> None:
        self.date_line = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"
        for path, (headers, body) in _ROUTES.items():
            self.keep_alive[path] = self.build(200, headers, body, keep_alive=True)
            self.close[path] = self.build(200, headers, body, keep_alive=False)
        self._loop.call_later(1.0, self._refresh)

    def build(self, status: int, headers: bytes, body: bytes, *, keep_alive: bool) -> bytes:
        status_line = b"HTTP/1.1 200 OK\r\n" if status == 200 else b"HTTP/1.1 404 Not Found\r\n"
        connection = b"" if keep_alive else b"connection: close\r\n"
        return status_line + self.date_line + headers + connection + b"\r\n" + body


class FloorProtocol(asyncio.Protocol):
    """httptools callbacks straight to transport.write; the whole server is this class."""

    def __init__(self, responses: Responses) -> None:
        self._responses = responses
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._path = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(_BAD_REQUEST)
                self._transport.close()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def on_url(self, url: bytes) -> None:
        self._path = url.split(b"?", 1)[0]

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = self._parser.should_keep_alive()
        if self._path == b"/echo":
            body = b"".join(self._body)
            headers = b"content-type: application/octet-stream\r\ncontent-length: %d\r\n" % len(
                body
            )
            transport.write(self._responses.build(200, headers, body, keep_alive=keep_alive))
        else:
            table = self._responses.keep_alive if keep_alive else self._responses.close
            response = table.get(self._path)
            if response is None:
                headers, body = _NOT_FOUND
                response = self._responses.build(404, headers, body, keep_alive=keep_alive)
            transport.write(response)
        self._body = []
        if not keep_alive:
            transport.close()


async def _serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    responses = Responses(loop)
    server = await loop.create_server(lambda: FloorProtocol(responses), sock=sock, backlog=2048)
    async with server:
        await stop.wait()


def _listen(bind: str) -> socket.socket:
    host, _, port = bind.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _run_forked(sock: socket.socket, workers: int) -> None:
    # Signals stay blocked in the parent so sigwait sees them; each child unblocks them.
    watched = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
            uvloop.run(_serve(sock))
            os._exit(0)
        children.append(pid)
    sock.close()
    while children:
        if signal.sigwait(watched) in (signal.SIGTERM, signal.SIGINT):
            for pid in children:
                os.kill(pid, signal.SIGTERM)
        while children:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.remove(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    args = parser.parse_args()
    sock = _listen(args.bind)
    if args.workers == 1:
        uvloop.run(_serve(sock))
    else:
        _run_forked(sock, args.workers)


if __name__ == "__main__":
    main()
