"""ProxyTrust: who is trusted, and what a trusted proxy's headers resolve to."""

from __future__ import annotations

import pytest

from serve.server.proxy import ProxyTrust

Headers = list[tuple[bytes, bytes]]
PEER = ("10.0.0.5", 41000)


@pytest.mark.parametrize(
    ("allow", "host", "trusted"),
    [
        (("127.0.0.1",), "127.0.0.1", True),
        (("127.0.0.1",), "127.0.0.2", False),
        (("127.0.0.1",), None, False),
        (("127.0.0.1",), "::ffff:127.0.0.1", True),
        (("10.0.0.0/8",), "10.200.3.4", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("10.0.0.1/8",), "10.9.9.9", True),  # host bits are tolerated
        (("192.168.1.0/24", "10.0.0.1"), "10.0.0.1", True),
        (("192.168.1.0/24", "10.0.0.1"), "192.168.1.77", True),
        (("::1",), "::1", True),
        (("::1",), "0:0:0:0:0:0:0:1", True),
        (("2001:db8::/32",), "2001:db8:cafe::17", True),
        (("2001:db8::/32",), "2001:db9::1", False),
        (("10.0.0.0/8",), "::ffff:10.1.1.1", True),
        (("10.0.0.0/8",), "not-an-ip", False),
        (("*",), "203.0.113.9", True),
        (("*",), None, True),  # unix-socket peer, trusted only under "*"
        ((), "127.0.0.1", False),
    ],
)
def test_trusts(allow: tuple[str, ...], host: str | None, trusted: bool) -> None:
    assert ProxyTrust(allow).trusts(host) is trusted


def test_trust_verdicts_are_stable_when_cached() -> None:
    trust = ProxyTrust(("10.0.0.0/8",))
    assert [trust.trusts("10.1.2.3") for _ in range(3)] == [True, True, True]
    assert [trust.trusts("8.8.8.8") for _ in range(3)] == [False, False, False]


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "1.2.3", "", "unix"])
def test_bad_allow_entry_is_a_clear_error(entry: str) -> None:
    with pytest.raises(ValueError, match=r"^forwarded_allow_ips: "):
        ProxyTrust((entry,))


TRUST = ProxyTrust(("10.0.0.0/8", "192.0.2.1"))


@pytest.mark.parametrize(
    ("headers", "expected_client", "expected_scheme"),
    [
        ([], PEER, "http"),
        ([(b"x-forwarded-for", b"203.0.113.7")], ("203.0.113.7", 0), "http"),
        ([(b"x-forwarded-proto", b"https")], PEER, "https"),
        ([(b"x-forwarded-proto", b"HTTPS ")], PEER, "https"),
        ([(b"x-forwarded-proto", b"ftp")], PEER, "http"),
        ([(b"x-forwarded-proto", b"")], PEER, "http"),
        # The client wrote the left part; the right-most untrusted hop is the client.
        ([(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7, 10.0.0.9")], ("203.0.113.7", 0), "http"),
        ([(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7, 192.0.2.1")], ("203.0.113.7", 0), "http"),
        # Every hop trusted: the left-most is the origin.
        ([(b"x-forwarded-for", b"10.1.1.1, 10.2.2.2")], ("10.1.1.1", 0), "http"),
        # Several header lines form one list, in order.
        (
            [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2")],
            ("203.0.113.7", 0),
            "http",
        ),
        ([(b"x-forwarded-for", b"203.0.113.7:5555")], ("203.0.113.7", 5555), "http"),
        ([(b"x-forwarded-for", b"2001:db8::1")], ("2001:db8::1", 0), "http"),
        ([(b"x-forwarded-for", b"[2001:db8::1]:443")], ("2001:db8::1", 443), "http"),
        ([(b"x-forwarded-for", b"203.0.113.7,,10.0.0.2,")], ("203.0.113.7", 0), "http"),
        # An unusable right-most untrusted hop stops the walk: the peer stays.
        ([(b"x-forwarded-for", b"203.0.113.7, garbage")], PEER, "http"),
        ([(b"x-forwarded-for", b"203.0.113.7, unknown, 10.0.0.2")], PEER, "http"),
        ([(b"x-forwarded-for", b"\xff\xfe\r\n")], PEER, "http"),
        ([(b"x-forwarded-for", b"999.1.1.1")], PEER, "http"),
        ([(b"x-forwarded-for", b"203.0.113.7:99999")], PEER, "http"),
        # One proto per hop when every proxy appended, else the nearest one.
        (
            [
                (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
                (b"x-forwarded-proto", b"https, http"),
            ],
            ("203.0.113.7", 0),
            "https",
        ),
        (
            [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"), (b"x-forwarded-proto", b"https")],
            ("203.0.113.7", 0),
            "https",
        ),
        ([(b"X-Forwarded-For", b"203.0.113.7")], PEER, "http"),  # names arrive lowercased
    ],
)
def test_x_forwarded_from_trusted_peer(
    headers: Headers, expected_client: tuple[str, int], expected_scheme: str
) -> None:
    assert TRUST.resolve(PEER, "http", headers) == (expected_client, expected_scheme)


@pytest.mark.parametrize(
    ("value", "expected_client", "expected_scheme"),
    [
        (b"for=203.0.113.7", ("203.0.113.7", 0), "http"),
        (b"for=203.0.113.7;proto=https", ("203.0.113.7", 0), "https"),
        (b'For="203.0.113.7";Proto="HTTPS"', ("203.0.113.7", 0), "https"),
        (b'for="[2001:db8:cafe::17]:4711";proto=https', ("2001:db8:cafe::17", 4711), "https"),
        (b'for="[2001:db8:cafe::17]"', ("2001:db8:cafe::17", 0), "http"),
        (b'for="203.0.113.7:_port"', ("203.0.113.7", 0), "http"),
        (
            b'for=192.0.2.60;proto=http;by=203.0.113.43;host="example.com"',
            ("192.0.2.60", 0),
            "http",
        ),
        # Several elements: the right-most untrusted one, with its own proto.
        (
            b"for=1.1.1.1;proto=http, for=203.0.113.7;proto=https, for=10.0.0.3",
            ("203.0.113.7", 0),
            "https",
        ),
        (b"for=10.1.1.1;proto=https, for=10.2.2.2", ("10.1.1.1", 0), "https"),
        (b"for=203.0.113.7, , for=10.0.0.3", ("203.0.113.7", 0), "http"),
        (b'for="\\"quoted\\"", for=203.0.113.7', ("203.0.113.7", 0), "http"),
        (b'for=1.1.1.1;host="a,b;c", for=203.0.113.7', ("203.0.113.7", 0), "http"),
        # Obfuscated or unknown identifiers give no client; the element's proto still counts.
        (b"for=_hidden;proto=https", PEER, "https"),
        (b"for=unknown", PEER, "http"),
        (b"proto=https", PEER, "https"),
        (b"for=203.0.113.7, for=_SEVKISEK", PEER, "http"),
        (b"for=203.0.113.7;proto=gopher", ("203.0.113.7", 0), "http"),
    ],
)
def test_forwarded_from_trusted_peer(
    value: bytes, expected_client: tuple[str, int], expected_scheme: str
) -> None:
    assert TRUST.resolve(PEER, "http", [(b"forwarded", value)]) == (
        expected_client,
        expected_scheme,
    )


@pytest.mark.parametrize(
    "value",
    [
        b'for="203.0.113.7',  # unbalanced quote
        b"for=203.0.113.7;for=1.1.1.1",  # parameter twice in one element
        b"for 203.0.113.7",
        b"for=203.0.113.7 proto=https",
        b"=x",
        b"for=a;;",
        b"\x00\xff",
    ],
)
def test_malformed_forwarded_is_ignored_whole(value: bytes) -> None:
    headers = [(b"forwarded", value), (b"x-forwarded-for", b"198.51.100.4")]
    assert TRUST.resolve(PEER, "http", headers) == (("198.51.100.4", 0), "http")
    assert TRUST.resolve(PEER, "http", [(b"forwarded", value)]) == (PEER, "http")


def test_client_quote_trick_never_yields_a_spoofed_client() -> None:
    """A quote the client leaves open swallows the proxy's element; no address comes out."""
    headers = [(b"forwarded", b'for="1.1.1.1'), (b"forwarded", b'for=203.0.113.7"')]
    assert TRUST.resolve(PEER, "http", headers) == (PEER, "http")


def test_forwarded_takes_precedence_over_x_forwarded() -> None:
    headers = [
        (b"x-forwarded-for", b"198.51.100.4"),
        (b"x-forwarded-proto", b"http"),
        (b"forwarded", b"for=203.0.113.7;proto=https"),
    ]
    assert TRUST.resolve(PEER, "http", headers) == (("203.0.113.7", 0), "https")


def test_forwarded_elements_span_header_lines() -> None:
    headers = [(b"forwarded", b"for=203.0.113.7"), (b"forwarded", b"for=10.0.0.4")]
    assert TRUST.resolve(PEER, "http", headers) == (("203.0.113.7", 0), "http")


@pytest.mark.parametrize(
    ("scheme", "proto", "expected"),
    [("ws", "https", "wss"), ("wss", "http", "ws"), ("ws", "wss", "wss"), ("http", "wss", "https")],
)
def test_websocket_scheme_keeps_its_family(scheme: str, proto: str, expected: str) -> None:
    headers = [(b"x-forwarded-proto", proto.encode())]
    assert TRUST.resolve(PEER, scheme, headers) == (PEER, expected)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
        [(b"forwarded", b"for=203.0.113.7;proto=https")],
    ],
)
def test_untrusted_peer_headers_are_ignored(headers: Headers) -> None:
    peer = ("198.51.100.1", 5000)
    assert TRUST.resolve(peer, "http", headers) == (peer, "http")
    assert TRUST.resolve(None, "http", headers) == (None, "http")


def test_unix_socket_peer_under_star() -> None:
    trust = ProxyTrust(("*",))
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]
    assert trust.resolve(None, "http", headers) == (("203.0.113.7", 0), "https")
    assert trust.resolve(None, "http", []) == (None, "http")


def test_star_trusts_every_hop_so_the_left_most_wins() -> None:
    trust = ProxyTrust(("*",))
    headers = [(b"x-forwarded-for", b"203.0.113.7, 198.51.100.4")]
    assert trust.resolve(PEER, "https", headers) == (("203.0.113.7", 0), "https")
