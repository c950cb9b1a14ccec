"""access_log_format compiled to an f-string renders exactly what the %-format renders."""

from __future__ import annotations

import pytest

from serve.server.access_format import FIELDS, compile_format
from serve.server.settings import DEFAULT_ACCESS_LOG_FORMAT

# Each: the FIELDS' values as the access log passes them.
VALUES = [
    ("127.0.0.1:51234", "GET /items?q=%20x HTTP/1.1", 200, 1234, 12.5),
    ("-", 'G\\x1bET /a\\x0d\\x0a"forged" HTTP/2', 500, 0, 0.0004),
    ("[::1]:1", "GET /café/ünï?é=1 HTTP/1.1", 404, 10**12, 99999.99951),
    ("10.0.0.1:4", "POST /{x}/%(path)s HTTP/1.0", 101, -1, 0.05),
]
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
    for client, request_line, status, nbytes, duration_ms in VALUES:
        method, _, rest = request_line.partition(" ")
        path = rest.rpartition(" ")[0].partition("?")[0]
        values = (client, request_line, status, nbytes, duration_ms, method, path)
        expected = "head: " + fmt % dict(zip(FIELDS, values, strict=True)) + suffix
        assert render("head: ", *values) == expected


def test_the_default_format_is_compiled_not_percent_formatted() -> None:
    render = compile_format(DEFAULT_ACCESS_LOG_FORMAT, "\n")
    assert render.__code__.co_filename == "<access_log_format>"
    # Its %s and %.1f conversions are the f-string's own: no %-format (P0, ...) is left.
    names = render.__code__.co_names
    assert names and all(name.startswith("L") for name in names)
