"""HTTP/2 against RFC 9113 and the ASGI spec, with the raw h2 client (and httpx for TLS):
100-continue, resets and disconnects, what an app may not send, malformed requests, h2c
upgrades of bodiless requests, and limit_concurrency on an ALPN h2 connection.

The raw client validates what it receives (uppercase or connection-specific fields in a
response are a protocol error to it), so a test that reads a response also checks those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.events as ev
import httpx
import pytest
import trustme
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame

from tests.conftest import ServeProcess, raw_request, wait_until
from tests.h2_client import RawH2
from tests.integration.test_http2 import H2C, get, start
from tests.tls_certs import client_context, server_leaf, write_leaf

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def h2c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = start(tmp_path_factory.mktemp("h2-rules"), http2=H2C)
    yield proc
    proc.kill_group()


def informational(client: RawH2, stream_id: int) -> list[bytes]:
    return [
        dict(e.headers or [])[b":status"]
        for e in client.events
        if isinstance(e, ev.InformationalResponseReceived) and e.stream_id == stream_id
    ]


def response_headers(client: RawH2, stream_id: int) -> list[tuple[bytes, bytes]]:
    (head,) = [
        e for e in client.events if isinstance(e, ev.ResponseReceived) and e.stream_id == stream_id
    ]
    return list(head.headers or [])


# -- 100-continue -----------------------------------------------------------------------------
def test_expect_100_continue_is_answered_when_the_app_reads(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    expect = ((b"expect", b"100-continue"),)
    stream_id = client.request("/count", "POST", end=False, extra=expect)
    # The body waits for the 100, as a client that asked for one does.
    client.read_until(lambda e: isinstance(e, ev.InformationalResponseReceived))
    assert informational(client, stream_id) == [b"100"]
    client.conn.send_data(stream_id, b"x" * 1000, end_stream=True)
    client.flush()
    status, body, _ = client.response(stream_id)
    client.close()
    assert (status, body) == (200, b"1000")


def test_no_100_continue_when_the_app_answers_without_reading(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    expect = ((b"expect", b"100-continue"),)
    stream_id = client.request("/", "POST", end=False, extra=expect)
    status, body, _ = client.response(stream_id)
    assert (status, body) == (200, b"Hello, world!")
    assert informational(client, stream_id) == []
    # The unread body is refused (RST_STREAM NO_ERROR after the response); the connection
    # serves on.
    assert client.response(client.request("/"))[1] == b"Hello, world!"
    client.close()


# -- resets, disconnects, the ASGI rules ------------------------------------------------------
def test_a_client_reset_is_http_disconnect_and_a_later_send_raises(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.request("/until-disconnect", "POST", end=False)
    client.conn.send_data(stream_id, b"some body")
    client.flush()
    client.ping()
    client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
    client.flush()
    # ASGI spec 2.4: an OSError subclass, which the server does not log as an app error.
    log = h2c.wait_log("app: send after the reset raised ClientDisconnected")
    assert "app: disconnect seen" in log
    assert "exception in the ASGI app" not in log
    # Nothing of the late response reached the client, and the connection serves on.
    assert client.response(client.request("/"))[1] == b"Hello, world!"
    assert not [e for e in client.events if getattr(e, "stream_id", 0) == stream_id and
                isinstance(e, (ev.ResponseReceived, ev.DataReceived))]  # fmt: skip
    client.close()


def test_receive_after_the_response_is_http_disconnect(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.request("/after-response", "POST", end=False)
    client.conn.send_data(stream_id, b"ping", end_stream=True)
    client.flush()
    assert client.response(stream_id)[:2] == (200, b"ping")
    client.close()
    h2c.wait_log("app: receive after the response: http.disconnect")


def test_response_names_are_lowercased_and_connection_fields_dropped(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.request("/headers-out")
    status, body, _ = client.response(stream_id)
    client.close()
    assert (status, body) == (200, b"stripped")
    names = [name for name, _ in response_headers(client, stream_id)]
    assert b"x-mixed-case" in names
    dropped = {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    }
    assert not dropped & set(names)


def test_a_body_longer_than_its_content_length_is_a_500(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    status, body, _ = client.response(client.request("/declared-length?parts=abcdefgh"))
    client.close()
    assert (status, body) == (500, b"Internal Server Error")


def test_a_body_that_outgrows_its_content_length_resets_the_stream(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.request("/declared-length?parts=abc,defgh")
    status, body, _ = client.response(stream_id)
    resets = [e for e in client.events if isinstance(e, ev.StreamReset)]
    assert (status, body) == (200, b"abc")
    assert [(r.stream_id, r.error_code) for r in resets] == [(stream_id, ErrorCodes.INTERNAL_ERROR)]
    assert client.response(client.request("/"))[1] == b"Hello, world!"
    client.close()


def test_a_body_short_of_its_content_length_resets_the_stream(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.request("/declared-length?parts=abc,de")
    status, body, _ = client.response(stream_id)
    resets = [e for e in client.events if isinstance(e, ev.StreamReset)]
    client.close()
    assert (status, body) == (200, b"abc")
    assert [(r.stream_id, r.error_code) for r in resets] == [(stream_id, ErrorCodes.INTERNAL_ERROR)]


# -- malformed requests -----------------------------------------------------------------------
def test_a_request_body_unlike_its_content_length_ends_the_connection(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    declared = ((b"content-length", b"10"),)
    stream_id = client.request("/count", "POST", end=False, extra=declared)
    client.conn.send_data(stream_id, b"abc", end_stream=True)
    client.flush()
    goaway = client.goaway()
    client.close()
    # RFC 9113 section 8.1.1: malformed; h2 makes it a connection error (section 5.4.1).
    assert goaway is not None
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    assert get(h2c.port, "/") == "Hello, world!"


def raw_headers(client: RawH2, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None:
    """A HEADERS frame the client's own checks would not let it send."""
    block = client.conn.encoder.encode(fields)
    client.send_raw(
        HeadersFrame(stream_id, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize()
    )


def test_host_beside_authority(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    same = client.request("/scope", extra=((b"host", b"localhost"),))
    status, body, _ = client.response(same)
    assert status == 200
    assert body.count(b'"host"') == 1
    request = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b":authority", b"a.example"),
        (b"host", b"b.example"),
    ]
    raw_headers(client, 3, request)
    goaway = client.goaway()
    client.close()
    # RFC 9113 section 8.3.1: a Host unlike :authority is malformed.
    assert goaway is not None
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_split_cookie_fields_reach_the_app_as_one(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    cookies = ((b"cookie", b"a=1"), (b"cookie", b"b=2"))
    status, body, _ = client.response(client.request("/scope", extra=cookies))
    client.close()
    assert status == 200
    # RFC 9113 section 8.2.3: joined with "; " for an application.
    assert json.loads(body)["headers"].count(["cookie", "a=1; b=2"]) == 1
    assert [name for name, _ in json.loads(body)["headers"]].count("cookie") == 1


def test_connect_is_refused_on_its_stream(h2c: ServeProcess) -> None:
    client = RawH2(h2c.port)
    stream_id = client.conn.get_next_available_stream_id()
    connect = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    client.conn.send_headers(stream_id, connect)
    client.flush()
    assert client.response(stream_id)[0] == 400
    assert client.response(client.request("/"))[1] == b"Hello, world!"
    client.close()


# -- h2c upgrade of bodiless requests ----------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE"])
def test_a_bodiless_request_upgrades_to_h2c(h2c: ServeProcess, method: str) -> None:
    head = f"{method} /scope HTTP/1.1\r\nHost: localhost\r\n".encode()
    client = RawH2(h2c.port, upgrade=head)
    assert client.switched.startswith(b"HTTP/1.1 101 ")
    status, body, _ = client.response(1)
    assert status == 200
    if method == "HEAD":
        assert body == b""
    else:
        assert b'"method": "%s"' % method.encode() in body
        assert b'"http_version": "2"' in body
    assert client.response(client.request("/"))[1] == b"Hello, world!"
    client.close()


def test_an_upgrade_with_a_body_stays_http_1_1(h2c: ServeProcess) -> None:
    request = (
        b"DELETE /count HTTP/1.1\r\nHost: localhost\r\n"
        b"Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 3\r\n\r\nabc"
    )
    reply = raw_request(h2c.port, request)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\n3")


# -- limit_concurrency on an ALPN h2 connection -------------------------------------------------
def test_over_limit_concurrency_an_h2_client_reads_a_503(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = write_leaf(server_leaf(ca), tmp_path, "server")
    ssl = {"certfile": str(cert.certfile), "keyfile": str(cert.keyfile)}
    proc = start(tmp_path, ssl=ssl, http2={"enabled": True}, limit_concurrency=1)
    base = f"https://127.0.0.1:{proc.port}"

    def client() -> httpx.Client:
        return httpx.Client(base_url=base, http2=True, verify=client_context(ca), timeout=10)

    try:
        with client() as held:
            assert held.get("/").status_code == 200
            with client() as over:
                refused = over.get("/")
                assert refused.http_version == "HTTP/2"
                assert (refused.status_code, refused.text) == (503, "Service Unavailable")
                # The GOAWAY after the 503 makes the next request open a new connection,
                # refused again while the first one is held.
                assert over.get("/").status_code == 503
            assert held.get("/").status_code == 200
        served_over_h2_once_free(client)
    finally:
        proc.kill_group()


def test_over_limit_concurrency_a_cleartext_client_reads_its_own_protocols_503(
    tmp_path: Path,
) -> None:
    # Without ALPN the first bytes say which protocol the client speaks: an HTTP/2 client
    # with prior knowledge cannot read an HTTP/1.1 503 written before them.
    proc = start(tmp_path, http2={"enabled": True}, limit_concurrency=1)
    base = f"http://127.0.0.1:{proc.port}"

    def h2_client() -> httpx.Client:
        return httpx.Client(base_url=base, http1=False, http2=True, timeout=10)

    try:
        with httpx.Client(base_url=base, timeout=10) as held:
            assert held.get("/").status_code == 200
            with h2_client() as over:
                refused = over.get("/")
                assert (refused.http_version, refused.status_code) == ("HTTP/2", 503)
                assert refused.text == "Service Unavailable"
            reply = raw_request(proc.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 503 ")
            assert held.get("/").status_code == 200
        served_over_h2_once_free(h2_client)
    finally:
        proc.kill_group()


def served_over_h2_once_free(client: Callable[[], httpx.Client]) -> None:
    """The held connection closed: a new HTTP/2 connection is served again."""
    with client() as after:
        wait_until(lambda: after.get("/").status_code == 200)
        assert after.get("/").http_version == "HTTP/2"
