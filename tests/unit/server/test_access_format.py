"""access_log_format compiled to an f-string renders exactly what the %-format renders."""

from __future__ import annotations

import json

import pytest

from serve.server.access_format import FIELDS, compile_format, compile_json_line, json_quoted
from serve.server.settings import DEFAULT_ACCESS_LOG_FORMAT

# Each: the FIELDS' values as the access log passes them.
VALUES = [
    ("127.0.0.1:51234", "GET /items?q=%20x HTTP/1.1", 200, 1234, 12.5),
    ("-", 'G\\x1bET /a\\x0d\\x0a"forged" HTTP/2', 500, 0, 0.0004),
    ("[::1]:1", "GET /café/ünï?é=1 HTTP/1.1", 404, 10**12, 99999.99951),
    ("10.0.0.1:4", "POST /{x}/%(path)s HTTP/1.0", 101, -1, 0.05),
]


def with_paths(
    client: str, request_line: str, status: int, nbytes: int, duration_ms: float
) -> tuple[object, ...]:
    """All the FIELDS' values, the method and path taken from the request line."""
    method, _, rest = request_line.partition(" ")
    path = rest.rpartition(" ")[0].partition("?")[0]
    return (client, request_line, status, nbytes, duration_ms, method, path)


VALUES_WITH_PATHS = [with_paths(*values) for values in VALUES]
FORMATS = [
    DEFAULT_ACCESS_LOG_FORMAT,
    "%(method)s %(path)s %(status)d %(bytes)i",
    "%(status)s",
    "",
    "no fields at all, 100%% { } {{x}}",
    "100%% %(client)s %%(path)s %(path)r %(status)s%%",
    "%(path)-12s|%(client)30s %(status)03d %(method).2s %(bytes)#x %(bytes)+d",
    "%(duration_ms)f %(duration_ms).f %(duration_ms).3f %(duration_ms)8.2f %(duration_ms)e",
    "%(duration_ms)s %(duration_ms)d %(status)ld %(bytes)5d %(status)a \\ \" ' {prefix}",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("suffix", ["", "\n"])
def test_the_compiled_format_renders_what_the_percent_format_renders(fmt: str, suffix: str) -> None:
    render = compile_format(fmt, suffix)
    # Compiled, not the %-format the compiler falls back to where it would differ.
    assert render.__code__.co_filename == "<access_log_format>"
    for values in VALUES_WITH_PATHS:
        expected = "head: " + fmt % dict(zip(FIELDS, values, strict=True)) + suffix
        assert render("head: ", *values) == expected


def test_the_default_format_is_compiled_not_percent_formatted() -> None:
    render = compile_format(DEFAULT_ACCESS_LOG_FORMAT, "\n")
    assert render.__code__.co_filename == "<access_log_format>"
    # Its %s and %.1f conversions are the f-string's own: no %-format (P0, ...) is left.
    names = render.__code__.co_names
    assert names and all(name.startswith("L") for name in names)


def json_line_expected(fmt: str, values: tuple[object, ...]) -> str:
    """A JSON line from the message on, as json.dumps would quote it."""
    named = dict(zip(FIELDS, values, strict=True))
    fields = {name: named[name] for name in ("client", "request_line", "status", "bytes")}
    tail = json.dumps({**fields, "duration_ms": 0, "method": named["method"]}, ensure_ascii=False)
    tail = tail.replace('"duration_ms": 0', f'"duration_ms": {named["duration_ms"]:.3f}')
    path = json.dumps(named["path"], ensure_ascii=False)
    return (
        json.dumps(fmt % named, ensure_ascii=False)[1:]
        + ", "
        + tail[1:-1]
        + f', "path": {path}}}\n'
    )


# Each: whether the message is rendered straight into JSON (else the %-format renders it
# and the message is quoted whole), and the format.
JSON_FORMATS = [
    (True, DEFAULT_ACCESS_LOG_FORMAT),
    (True, "%(method)s %(path)s %(status)d %(bytes)x"),
    (True, 'no fields, "quoted" \\ \t 100%% {x}'),
    (True, "%(duration_ms)s %(duration_ms)e %(duration_ms)8.2f %(status)a"),
    (False, "%(path)r"),
    (False, "%(client)30s|"),
    (False, "%(status)c"),
]


@pytest.mark.parametrize(("compiled", "fmt"), JSON_FORMATS)
def test_a_json_line_renders_its_message_quoted_then_the_fields(compiled: bool, fmt: str) -> None:
    render = compile_json_line(fmt)
    assert (render.__code__.co_filename == "<access_log_format>") is compiled
    tricky = ('"c\\', 'G\x1bET /\x01é\u2028"x" HTTP/1.1', 200, 34, 1.25, "G\x1bET", '/"x"')
    for values in [*VALUES_WITH_PATHS, tricky]:
        quoted = [
            json_quoted(values[FIELDS.index(name)])
            for name in ("client", "request_line", "method", "path")
        ]
        line = render("prefix: ", *values, *quoted)
        assert line == "prefix: " + json_line_expected(fmt, values)
        json.loads('{"msg": "' + line.removeprefix("prefix: "))
