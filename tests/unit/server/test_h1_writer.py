"""Response serialisation: status lines, header validation, chunk framing."""

from __future__ import annotations

import pytest

from serve.server import h1_writer as w
from serve.server import http_fields as hf
from serve.server.errors import InvalidResponse


def test_status_lines_are_cached_and_valid() -> None:
    assert w.status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert w.status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert w.status_line(599) == b"HTTP/1.1 599 \r\n"
    assert w.status_line(200) is w.status_line(200)


@pytest.mark.parametrize("status", [0, 99, 600, 1000])
def test_out_of_range_status_is_refused(status: int) -> None:
    with pytest.raises(InvalidResponse):
        w.status_line(status)


def test_headers_are_encoded_in_order() -> None:
    encoded = hf.encode_headers([(b"content-type", b"text/plain"), (b"X-A", b"1 2")])
    assert encoded == b"content-type: text/plain\r\nX-A: 1 2\r\n"
    assert hf.encode_headers([]) == b""


@pytest.mark.parametrize(
    "value", [b"a\r\nset-cookie: x", b"a\nb", b"a\rb", b"a\x00b"], ids=["crlf", "lf", "cr", "nul"]
)
def test_header_value_injection_is_refused(value: bytes) -> None:
    with pytest.raises(InvalidResponse):
        hf.encode_headers([(b"x-ok", b"fine"), (b"x-bad", value)])


@pytest.mark.parametrize("name", [b"", b"a b", b"a:b", b"a\r\nb", b"caf\xc3\xa9"])
def test_invalid_header_names_are_refused(name: bytes) -> None:
    with pytest.raises(InvalidResponse):
        hf.encode_headers([(b"x-ok", b"1"), (name, b"v")])


def test_chunk_framing() -> None:
    assert w.chunk(b"hello") == b"5\r\nhello\r\n"
    assert w.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert w.CHUNKED_END == b"0\r\n\r\n"


def test_error_response_closes_and_has_length() -> None:
    response = w.error_response(413, b"date: D\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") or head.startswith(
        b"HTTP/1.1 413 Content Too Large\r\n"
    )
    assert b"connection: close" in head
    assert b"content-length: %d" % len(body) in head
    assert b"date: D" in head


@pytest.mark.parametrize(("status", "empty"), [(100, True), (204, True), (304, True), (200, False)])
def test_statuses_without_content(status: int, empty: bool) -> None:
    assert (status in hf.NO_BODY_STATUSES) is empty


def test_the_content_length_policy_is_one_for_every_protocol() -> None:
    # The first body message may not exceed the declared length: nothing is sent yet.
    assert hf.first_part(10, 4) == 6
    with pytest.raises(InvalidResponse):
        hf.first_part(3, 4)
    # A later one that goes over raises into the app (the head is out already).
    assert hf.next_part(6, 6) == 0
    with pytest.raises(RuntimeError):
        hf.next_part(6, 7)
    # A body that ends short is reported (the connection or stream cannot end cleanly).
    assert hf.ended_whole(0)
    assert not hf.ended_whole(2)
