"""HTTP/2 graceful drain: the GOAWAY, when it is sent and what follows it.

A client built on the h2 library (httpx) reads nothing after a GOAWAY, so serve sends it
when the connection has no stream open, as the last frame; a stream still open at the
drain's second sweep gets it while it runs, which clients such as nghttp read on after.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import h2.events as ev
import pytest
from hyperframe.frame import HeadersFrame

from tests.h2_client import RawH2
from tests.integration.test_http2 import get, start

pytestmark = pytest.mark.system


def test_sigterm_sends_goaway_and_lets_the_open_stream_finish(tmp_path: Path) -> None:
    proc = start(tmp_path, http2={"enabled": True}, graceful_timeout=20)
    try:
        # h2 is imported by the first HTTP/2 connection, not at worker start.
        assert get(proc.port, "/h2-loaded") == "False"
        # nghttp (nghttp2-client) goes on reading an open stream after a GOAWAY. A stream
        # still open at the drain's second sweep (about a second in) gets the GOAWAY then.
        nghttp = subprocess.Popen(
            ["nghttp", "-v", f"{proc.url}/slow?s=3.5"], stdout=subprocess.PIPE, text=True
        )
        proc.wait_log("app: slow started")
        proc.signal(signal.SIGTERM)
        out, _ = nghttp.communicate(timeout=30)
        assert nghttp.returncode == 0, out
        goaway = re.search(r"recv GOAWAY frame.*\n\s*\(last_stream_id=(\d+), error_code=(\w+)", out)
        assert goaway is not None, out
        request = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out)
        assert request is not None, out
        assert goaway.groups() == (request.group(1), "NO_ERROR")
        assert ":status: 200" in out
        assert out.index("recv GOAWAY") < out.index("slow done")
        assert proc.wait_exit(30) == 0
    finally:
        proc.kill_group()


def test_an_idle_connection_gets_goaway_as_its_last_frame(tmp_path: Path) -> None:
    proc = start(tmp_path, http2={"enabled": True}, graceful_timeout=20)
    try:
        client = RawH2(proc.port)
        assert client.response(client.request("/"))[1] == b"Hello, world!"
        proc.signal(signal.SIGTERM)
        # h2 would fail on any frame after the GOAWAY in what it reads: there is none.
        goaway = client.goaway()
        assert goaway is not None
        assert (goaway.last_stream_id, goaway.error_code) == (1, 0)
        assert not [e for e in client.events if isinstance(e, ev.StreamReset)]
        # A request the client sent before it read the GOAWAY is above its last stream id:
        # dropped unprocessed (safe to retry), and the connection closes with nothing more.
        late = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/slow?s=0")]
        block = client.conn.encoder.encode([*late, (b":authority", b"localhost")])
        client.send_raw(
            HeadersFrame(3, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize()
        )
        assert _rest(client) == b""
        client.close()
        assert proc.wait_exit(30) == 0
        assert "slow started" not in proc.log()
    finally:
        proc.kill_group()


def _rest(client: RawH2) -> bytes:
    """What the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = client.sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
