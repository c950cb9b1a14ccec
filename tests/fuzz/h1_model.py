"""Hypothesis strategies for HTTP/1.1 request bytes, and the events a valid request must give.

Rules: a Request built here is valid by construction (RFC 9112 syntax, one Host, CL or
chunked framing, never both), so its expected events follow from the fields alone, computed
without the parser's code. Mutations and token soups make invalid input on purpose; for
those only the invariants of h1_checks apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from hypothesis import strategies as st

from server.events import BodyChunk, Event, MessageEnd, RequestHead
from server.settings import Limits

_UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
_PCHAR = st.one_of(
    st.sampled_from(_UNRESERVED + "!$&'()*+,;=:@"),
    st.sampled_from(["%20", "%2F", "%2f", "%C3%A9", "%FF", "%00", "%25"]),
)
_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE_BYTE = [bytes([b]) for b in range(0x21, 0x7F)] + [b"\x80", b"\xc3\xa9", b"\xff"]
_OWS = st.sampled_from([b"", b"", b" ", b"\t", b"  ", b" \t"])


@dataclass
class Request:
    """One valid request: its bytes and what the framing layer must report for it."""

    method: str
    target: bytes
    version: str
    fields: list[tuple[bytes, bytes]]  # as sent: name case and the OWS around values
    body: bytes = b""
    # The body as sent when chunked (sizes, extensions, data and trailers); None: by length.
    chunked: bytes | None = None
    keep_alive: bool = True
    expect_continue: bool = False
    upgrade: bytes | None = None
    trailer_size: int = 0  # the trailer lines, without the empty line that ends them
    leading_crlf: int = 0

    def request_line(self) -> bytes:
        return b"%s %s HTTP/%s" % (self.method.encode(), self.target, self.version.encode())

    def head(self) -> bytes:
        lines = [self.request_line(), *(name + b":" + value for name, value in self.fields)]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def wire(self) -> bytes:
        body = self.body if self.chunked is None else self.chunked
        return b"\r\n" * self.leading_crlf + self.head() + body

    def events(self) -> list[Event]:
        raw_path, query = self.target, b""
        if self.target != b"*":
            # origin-form, or absolute-form whose path starts after the authority
            path = self.target
            if not path.startswith(b"/"):
                path = path.partition(b"://")[2]
            start = min(i for i in (path.find(b"/"), path.find(b"?"), len(path)) if i >= 0)
            raw_path, _, query = path[start:].partition(b"?")
            raw_path = raw_path or b"/"
        head = RequestHead(
            method=self.method,
            target=self.target,
            path=unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            raw_path=raw_path,
            query_string=query,
            http_version=self.version,
            headers=[(name.lower(), value.strip(b" \t")) for name, value in self.fields],
            keep_alive=self.keep_alive,
            expect_continue=self.expect_continue,
            upgrade=self.upgrade,
            has_body=bool(self.body) or self.chunked is not None,
        )
        body: list[Event] = [BodyChunk(self.body)] if self.body else []
        return [head, *body, MessageEnd()]

    def over(self, limits: Limits) -> set[int]:
        """The statuses this request earns under `limits` (empty: it fits)."""
        statuses: set[int] = set()
        if len(self.request_line()) > limits.max_request_line:
            statuses.add(414)
        if len(self.head()) > limits.max_header_size or len(self.fields) > limits.max_headers:
            statuses.add(431)
        if limits.max_body_size is not None and len(self.body) > limits.max_body_size:
            statuses.add(413)
        if self.trailer_size > limits.max_header_size:
            statuses.add(431)
        return statuses


def expected_events(requests: list[Request]) -> list[Event]:
    """Events for pipelined requests: nothing after one that closes the connection."""
    events: list[Event] = []
    for request in requests:
        events += request.events()
        if not request.keep_alive:
            break
    return events


def _mixed_case(text: str) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.booleans(), min_size=len(text), max_size=len(text))
    return flips.map(
        lambda up: "".join(
            c.upper() if u else c.lower() for c, u in zip(text, up, strict=True)
        ).encode()
    )


@st.composite
def _target(draw: st.DrawFn, method: str) -> tuple[bytes, bool]:
    """(target, has_authority)."""
    segment = st.lists(_PCHAR, max_size=6).map("".join)
    path = "/" + "/".join(draw(st.lists(segment, max_size=4)))
    segments = draw(st.lists(_PCHAR, max_size=8))
    query = draw(st.none() | st.just("".join(segments) + "/?"))
    origin = path + ("" if query is None else "?" + query)
    form = draw(st.sampled_from(["origin"] * 6 + ["absolute", "asterisk"]))
    if form == "absolute":
        host = draw(st.sampled_from(["example.com", "127.0.0.1:8000", "[::1]"]))
        return f"{draw(st.sampled_from(['http', 'HTTPS']))}://{host}{origin}".encode(), True
    if form == "asterisk" and method == "OPTIONS":
        return b"*", False
    return origin.encode(), False


_FIELD_VALUE = st.lists(
    st.one_of(st.sampled_from(_VALUE_BYTE), st.sampled_from([b"a", b"A", b"0"])), max_size=12
).map(b"".join)


@st.composite
def _value(draw: st.DrawFn) -> bytes:
    value = draw(_FIELD_VALUE)
    inner = draw(st.sampled_from([b" ", b"\t", b"  "]))
    if len(value) > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, len(value) - 1))
        value = value[:cut] + inner + value[cut:]
    return draw(_OWS) + value + draw(_OWS)


_EXTRA_NAME = st.text(st.sampled_from(_TCHAR), min_size=1, max_size=10).filter(
    lambda name: (
        name.lower()
        not in ("host", "content-length", "transfer-encoding", "connection", "expect", "upgrade")
    )
)


@st.composite
def _chunked(draw: st.DrawFn, body: bytes, lead_bws: bool) -> tuple[bytes, int]:
    """body in chunks, with hex sizes in either case, extensions and trailers; and the
    size of the trailer lines."""
    out, pos = [], 0
    extension = chunk_extensions(lead_bws)
    while pos < len(body):
        size = draw(st.integers(1, len(body) - pos))
        digits = draw(st.sampled_from(["%x", "%X", "0%x"])) % size
        out.append(digits.encode() + draw(extension) + b"\r\n" + body[pos : pos + size] + b"\r\n")
        pos += size
    out.append(draw(st.sampled_from([b"0", b"000"])) + draw(extension) + b"\r\n")
    trailers = [
        name.encode() + b":" + draw(_value()) + b"\r\n"
        for name in draw(st.lists(_EXTRA_NAME, max_size=3))
    ]
    return b"".join(out + trailers) + b"\r\n", sum(map(len, trailers))


# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-val = token / quoted-string (RFC 9110 §5.6.4: qdtext or a quoted-pair inside).
_BWS = st.sampled_from([b"", b"", b"", b" ", b"\t", b" \t "])
_TOKEN = st.text(st.sampled_from(_TCHAR), min_size=1, max_size=5).map(str.encode)
_QDTEXT = [bytes([b]) for b in (0x09, 0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F), 0xFF)]
_QUOTED_PAIR = [b"\\" + bytes([b]) for b in (0x09, 0x20, *range(0x21, 0x7F), 0x80)]
_QUOTED = st.lists(st.sampled_from(_QDTEXT + _QUOTED_PAIR), max_size=6).map(
    lambda parts: b'"' + b"".join(parts) + b'"'
)


@st.composite
def _extension(draw: st.DrawFn, lead_bws: bool) -> bytes:
    """One chunk extension from the grammar; without `lead_bws`, nothing before its ';'."""
    ext = (draw(_BWS) if lead_bws else b"") + b";" + draw(_BWS) + draw(_TOKEN)
    if draw(st.booleans()):
        ext += draw(_BWS) + b"=" + draw(_BWS) + draw(_TOKEN | _QUOTED)
    return ext


def chunk_extensions(lead_bws: bool = True) -> st.SearchStrategy[bytes]:
    return st.lists(_extension(lead_bws), max_size=3).map(b"".join)


@st.composite
def requests(draw: st.DrawFn, version: str | None = None, lead_bws: bool = True) -> Request:
    """One valid request, with any framing, connection options and fields; `lead_bws`:
    chunk extensions may have whitespace before their ';'."""
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    version = version or draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))
    target, has_authority = draw(_target(method))
    fields: list[tuple[bytes, bytes]] = []
    host = draw(st.sampled_from([b"example.com", b"a", b"127.0.0.1:8000", b"[::1]:80", b""]))
    if version == "1.1" or draw(st.booleans()):
        fields.append(
            (draw(_mixed_case("host")), draw(_OWS) + (host or (b"h" if has_authority else b"")))
        )
    fields += [(n.encode(), draw(_value())) for n in draw(st.lists(_EXTRA_NAME, max_size=5))]
    body = draw(st.binary(max_size=40))
    chunked = version == "1.1" and draw(st.booleans())
    request = Request(method, target, version, fields, body)
    if chunked:
        request.chunked, request.trailer_size = draw(_chunked(body, lead_bws))
        fields.append((draw(_mixed_case("transfer-encoding")), b" " + draw(_mixed_case("chunked"))))
    elif body or draw(st.booleans()):
        length = b"%d" % len(body)
        fields.append(
            (
                draw(_mixed_case("content-length")),
                b" " + draw(st.sampled_from([b"", b"00"])) + length,
            )
        )
    _connection(draw, request)
    if draw(st.booleans()):
        fields.append((b"Expect", b" " + draw(_mixed_case("100-continue"))))
        request.expect_continue = version == "1.1"
    draw(st.randoms(use_true_random=False)).shuffle(fields)
    request.leading_crlf = draw(st.sampled_from([0, 0, 0, 1, 2]))
    return request


def _connection(draw: st.DrawFn, request: Request) -> None:
    options = draw(st.lists(st.sampled_from(["close", "keep-alive", "upgrade", "te"]), max_size=3))
    if not options:
        request.keep_alive = request.version == "1.1"
        return
    request.fields.append((b"Connection", b" " + b", ".join(draw(_mixed_case(o)) for o in options)))
    request.keep_alive = "close" not in options and (
        request.version == "1.1" or "keep-alive" in options
    )
    if "upgrade" in options and draw(st.booleans()):
        protocol = draw(st.sampled_from(["websocket", "h2c", "WebSocket"]))
        request.fields.append((b"Upgrade", b" " + protocol.encode()))
        request.upgrade = protocol.lower().encode()


pipelines = st.lists(requests(), min_size=1, max_size=4)

LIMITS = st.one_of(
    st.just(Limits()),
    st.builds(
        Limits,
        max_request_line=st.integers(16, 200),
        max_header_size=st.integers(24, 600),
        max_headers=st.integers(0, 8),
        max_body_size=st.none() | st.integers(0, 48),
    ),
)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    """Sorted split offsets: a few random ones, or every byte."""
    if len(data) < 2:
        return st.just([])
    offsets = st.lists(st.integers(1, len(data) - 1), unique=True, max_size=8).map(sorted)
    return offsets | st.just(list(range(1, len(data))))


_SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b"\x7f", b"\xff"]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """data after 1-4 edits: flips, inserted CR/LF/NUL/SP..., deletions, doubled lines,
    line ends cut down to a bare LF or a bare CR."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "insert", "delete", "double-line", "bare-lf", "bare-cr"])
        )
        # Half the edits land in the last quarter, where bodies, chunk lines and trailers are.
        low = draw(st.sampled_from([0, len(buf) * 3 // 4]))
        at = draw(st.integers(min(low, max(0, len(buf) - 1)), max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            buf[at:at] = draw(st.sampled_from(_SPECIAL) | st.binary(min_size=1, max_size=3))
        elif kind == "delete" and buf:
            del buf[at : at + draw(st.integers(1, 3))]
        elif kind == "double-line":
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at)
            if end >= 0:
                buf[start:start] = buf[start : end + 1]
        else:
            crlf = buf.find(b"\r\n", at)
            if crlf >= 0:
                del buf[crlf + (kind == "bare-cr")]
    return bytes(buf)


_SOUP = [
    b"GET ",
    b"POST ",
    b"CONNECT ",
    b"PRI ",
    b"/",
    b"/a?b",
    b"*",
    b"http://a/",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b" HTTP/2.0",
    b"\r\n",
    b"\r",
    b"\n",
    b"Host: a",
    b"Host:",
    b"\r\nHost: b",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 00",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Connection: close",
    b"Connection: upgrade",
    b"Upgrade: h2c",
    b"Expect: 100-continue",
    b" ",
    b"\t",
    b":",
    b"0",
    b"3",
    b"a",
    b"ffffffffffffffffff",
    b";x=1",
    b';y="q"',
    b"abc",
    b"\x00",
    b"\xff",
    b"\r\n\r\n",
    b"X: y",
]
token_soup = st.lists(st.sampled_from(_SOUP), max_size=40).map(b"".join)
