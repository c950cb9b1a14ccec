"""HTTP/2 header lists to requests and back, without a connection."""

from __future__ import annotations

import pytest

from serve.server.errors import InvalidResponse, RequestRejected
from serve.server.h2_scope import (
    Malformed,
    date_fields,
    request_head,
    response_fields,
    trailer_fields,
)


def fields(path: bytes = b"/a%20b?x=1", method: bytes = b"GET", **extra: bytes) -> list:
    head = [(b":method", method), (b":scheme", b"https"), (b":path", path)]
    head.append((b":authority", extra.pop("authority", b"example.com")))
    return head + [(name.encode().replace(b"_", b"-"), value) for name, value in extra.items()]


def test_pseudo_headers_become_the_request_and_authority_the_host() -> None:
    head = request_head(fields(accept=b"*/*", host=b"example.com"), has_body=False)
    assert head.method == "GET"
    assert head.http_version == "2"
    assert (head.path, head.raw_path, head.query_string) == ("/a b", b"/a%20b", b"x=1")
    assert head.headers == [(b"host", b"example.com"), (b"accept", b"*/*")]
    assert not head.has_body


def test_expect_continue_counts_only_with_a_body() -> None:
    assert request_head(fields(expect=b"100-continue"), has_body=True).expect_continue
    assert not request_head(fields(expect=b"100-continue"), has_body=False).expect_continue


def test_asterisk_form_is_for_options_only() -> None:
    assert request_head(fields(b"*", b"OPTIONS"), has_body=False).raw_path == b"*"
    with pytest.raises(RequestRejected) as info:
        request_head(fields(b"*", b"GET"), has_body=False)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "bad",
    [
        fields(b"relative"),
        fields(b"/with space"),
        fields(b"/\xc3\xa9"),
        fields(method=b"G E T"),
        fields(authority=b"a b"),
        fields(authority=b"user@host"),
        [*fields(method=b"CONNECT"), (b":protocol", b"websocket")],
        [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
    ],
)
def test_requests_we_do_not_serve_are_400(bad: list) -> None:
    with pytest.raises(RequestRejected) as info:
        request_head(bad, has_body=False)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "bad",
    [
        [(b":method", b"GET"), (b":scheme", b"http")],
        [*fields(), (b":protocol", b"websocket")],
        fields(host=b"other"),
        fields(Accept=b"*/*"),
        fields(x=b"a\r\nb"),
    ],
)
def test_malformed_requests_raise_malformed(bad: list) -> None:
    with pytest.raises(Malformed):
        request_head(bad, has_body=False)


def test_response_fields_drop_hop_by_hop_fields_and_add_the_date() -> None:
    headers = [(b"Content-Type", b"text/plain"), (b"Connection", b"close"), (b"X-A", b"1")]
    date = date_fields(b"date: Wed, 25 Nov 2026 13:40:01 GMT\r\nserver: serve\r\n")
    out, declared = response_fields(201, headers, date)
    assert out == [
        (b":status", b"201"),
        (b"content-type", b"text/plain"),
        (b"x-a", b"1"),
        (b"date", b"Wed, 25 Nov 2026 13:40:01 GMT"),
        (b"server", b"serve"),
    ]
    assert declared is None
    assert response_fields(200, [(b"content-length", b"12")], [])[1] == 12


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (101, []),
        (99, []),
        (200, [(b"x-bad", b"a\r\nx-injected: 1")]),
        (200, [(b"bad name", b"1")]),
        (200, [(b"content-length", b"-1")]),
    ],
)
def test_unsafe_responses_are_refused(status: int, headers: list) -> None:
    with pytest.raises(InvalidResponse):
        response_fields(status, headers, [])


def test_trailers_are_checked_and_lowercased() -> None:
    assert trailer_fields([(b"X-Sum", b"1")]) == [(b"x-sum", b"1")]
    for bad in ([(b"x", b"a\nb")], [(b"connection", b"close")]):
        with pytest.raises(InvalidResponse):
            trailer_fields(bad)


def test_field_values_are_trimmed_as_rfc_9113_asks() -> None:
    # h2's own outbound normalisation is off: these lists are what goes on the wire.
    headers = [(b"X-Pad", b" \tpadded\t "), (b"X-Inner", b"a  b"), (b"X-Empty", b"")]
    out, _ = response_fields(200, headers, [])
    assert out[1:] == [(b"x-pad", b"padded"), (b"x-inner", b"a  b"), (b"x-empty", b"")]
    assert trailer_fields([(b"X-Sum", b" 1 ")]) == [(b"x-sum", b"1")]
