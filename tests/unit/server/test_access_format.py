"""access_log_format compiled to f-strings renders exactly what the %-format renders, whole
or from the pieces around its duration."""

from __future__ import annotations

import json

import pytest

from serve.server.access_format import (
    FIELDS,
    LineFormat,
    compile_format,
    compile_json_line,
    json_quoted,
)
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


def with_quoted(values: tuple[object, ...]) -> tuple[object, ...]:
    """The fields' values, then the string fields' as a JSON line takes them."""
    named = dict(zip(FIELDS, values, strict=True))
    quoted = [
        json_quoted(str(named[name])) for name in ("client", "request_line", "method", "path")
    ]
    return (*values, *quoted)


def rendered_both_ways(line: LineFormat, prefix: str, values: tuple[object, ...]) -> str:
    """The line rendered whole, checked equal to it rendered from its fixed pieces."""
    arguments = with_quoted(values)
    whole = line.whole(prefix, *arguments)
    duration_ms = values[FIELDS.index("duration_ms")]
    assert isinstance(duration_ms, float)
    assert line.timed(prefix, duration_ms, line.fixed(*arguments)) == whole
    # The pieces do not depend on the duration they were made with.
    assert line.timed(prefix, duration_ms, line.fixed(*with_quoted(with_duration(values)))) == whole
    return whole


def with_duration(values: tuple[object, ...]) -> tuple[object, ...]:
    at = FIELDS.index("duration_ms")
    return (*values[:at], 77.125, *values[at + 1 :])


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
    line = compile_format(fmt, suffix)
    # Compiled, not the %-format the compiler falls back to where it would differ.
    assert line.whole.__code__.co_filename == "<access_log_format>"
    assert line.timed.__code__.co_filename == "<access_log_format>"
    for values in VALUES_WITH_PATHS:
        expected = "head: " + fmt % dict(zip(FIELDS, values, strict=True)) + suffix
        assert rendered_both_ways(line, "head: ", values) == expected


def test_the_default_format_is_compiled_not_percent_formatted() -> None:
    line = compile_format(DEFAULT_ACCESS_LOG_FORMAT, "\n")
    assert line.whole.__code__.co_filename == "<access_log_format>"
    # Its %s and %.1f conversions are the f-string's own: no %-format (P0, ...) is left.
    names = line.whole.__code__.co_names
    assert names and all(name.startswith("L") for name in names)
    # Around its one duration: the text before it and the "ms" and newline after.
    fixed = line.fixed(*with_quoted(VALUES_WITH_PATHS[0]))
    assert fixed == ('127.0.0.1:51234 - "GET /items?q=%20x HTTP/1.1" 200 1234 ', "ms\n")


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
    json_line = compile_json_line(fmt)
    assert (json_line.whole.__code__.co_filename == "<access_log_format>") is compiled
    tricky = ('"c\\', 'G\x1bET /\x01é\u2028"x" HTTP/1.1', 200, 34, 1.25, "G\x1bET", '/"x"')
    for values in [*VALUES_WITH_PATHS, tricky]:
        line = rendered_both_ways(json_line, "prefix: ", values)
        assert line == "prefix: " + json_line_expected(fmt, values)
        json.loads('{"msg": "' + line.removeprefix("prefix: "))
