"""access_log_format compiled once into a function that renders it with an f-string.

Rules:
- The format is a %-format over named fields (FIELDS). compile_format() returns a function
  of a prefix and the fields, in FIELDS order, giving exactly `prefix + fmt % fields +
  suffix`. Why: %-formatting parses its format at every call, about a quarter of the
  instructions of a whole access line (callgrind); an f-string is compiled once.
- A conversion becomes the f-string's plain `{name}` where that renders the same text: %s
  of any field, %d and %i of the integer fields, and a float's %f or %.Nf as `{name:.Nf}`.
  Any other (a width, a flag, %r, %x, ...) keeps its own %-format, `{P0 % name}`.
- The generated source names only what this module makes up: the fields (FIELDS, checked),
  the constants L0, L1, ... (the format's literal text) and P0, P1, ... (single
  conversions). No text of the format is ever part of the source.
- A format this parser does not follow exactly, or whose compiled result differs from the
  %-format on a sample, is rendered by the %-format itself: slower, never different.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

# An access line's fields, in the order the compiled function takes them.
FIELDS = ("client", "request_line", "status", "bytes", "duration_ms", "method", "path")
_INTEGERS = frozenset({"status", "bytes"})
# Python's %-conversion of a named field, or a literal "%%".
_CONVERSION = re.compile(
    r"%(?:\((?P<name>\w+)\)(?P<spec>[#0 +-]*\d*(?:\.\d*)?[hlL]?[diouxXeEfFgGcrsa])|%)"
)
# A float's %f or %.Nf: no flag, no width.
_FLOAT = re.compile(r"(?:\.\d*)?f")
_SAMPLE = ("10.0.0.1:5", "GET /a?b HTTP/1.1", 204, 1234, 1.25, "GET", "/a")
# The same with text that JSON must escape, for a JSON line.
_JSON_SAMPLE = (
    '"10.0.0.1:5\\',
    "G\tET /\x01\u00e9\u2028 HTTP/1.1",
    204,
    1234,
    1.25,
    "G\tET",
    '/"a',
)

# prefix, then the FIELDS' values.
Render = Callable[..., str]
# What follows a JSON line's message: the access fields, in JsonFormatter's order. The
# strings come already quoted for JSON (without their quotes), as QUOTED names them.
QUOTED = ("client_q", "request_line_q", "method_q", "path_q")
_JSON_FIELDS = (
    '", "client": "{client_q}", "request_line": "{request_line_q}", "status": {status}'
    ', "bytes": {bytes}, "duration_ms": {duration_ms:.3f}, "method": "{method_q}"'
    ', "path": "{path_q}"}}\n'
)
_QUOTED_OF = dict(zip(("client", "request_line", "method", "path"), QUOTED, strict=True))


def json_quoted(text: str) -> str:
    """`text` as a JSON string's content, without the quotes."""
    return encode_basestring(text)[1:-1]


def compile_format(fmt: str, suffix: str) -> Render:
    """What renders `prefix + fmt % fields + suffix` for (prefix, *fields in FIELDS order).
    `fmt` must be valid for the fields (settings check it first)."""
    by_percent = _percent_renderer(fmt, suffix)
    compiled = _compiled(fmt, suffix)
    if compiled is None or compiled("", *_SAMPLE) != by_percent("", *_SAMPLE):
        return by_percent
    return compiled


def compile_json_line(fmt: str) -> Render:
    """What renders a JSON access line from the message on, for (prefix, *FIELDS, *QUOTED):
    the prefix ends with the message's opening quote; the message is `fmt % fields` quoted
    for JSON, then come the access fields and a newline."""
    by_percent = _percent_json_renderer(fmt)
    compiled = _compiled(fmt, "", json=True)
    values: dict[str, Any] = dict(zip(FIELDS, _JSON_SAMPLE, strict=True))
    sample = (*_JSON_SAMPLE, *(json_quoted(values[name]) for name in _QUOTED_OF))
    if compiled is None or compiled("", *sample) != by_percent("", *sample):
        return by_percent
    return compiled


def _percent_renderer(fmt: str, suffix: str) -> Render:
    def render(prefix: str, *values: Any) -> str:
        return prefix + fmt % dict(zip(FIELDS, values, strict=True)) + suffix

    return render


def _percent_json_renderer(fmt: str) -> Render:
    def render(prefix: str, *values: Any) -> str:
        named = dict(zip(FIELDS + QUOTED, values, strict=True))
        return prefix + json_quoted(fmt % named) + _JSON_FIELDS.format(**named)

    return render


def _compiled(fmt: str, suffix: str, json: bool = False) -> Render | None:
    """With `json`, literal text is quoted for JSON, a string field shown as it is (%s)
    takes its quoted form, and the access fields follow the message."""
    constants: dict[str, Any] = {}
    parts = ["{prefix}"]

    def constant(kind: str, value: str) -> str:
        name = f"{kind}{len(constants)}"
        constants[name] = value
        return name

    def literal(text: str) -> bool:
        # A "%" left in literal text is a conversion the pattern did not follow.
        if "%" in text:
            return False
        if text:
            parts.append("{" + constant("L", json_quoted(text) if json else text) + "}")
        return True

    end = 0
    for match in _CONVERSION.finditer(fmt):
        if not literal(fmt[end : match.start()]):
            return None
        end = match.end()
        name, spec = match.group("name"), match.group("spec")
        if name is None:
            parts.append("{" + constant("L", "%") + "}")
        elif name not in FIELDS:
            return None
        elif spec == "s" or (spec in ("d", "i") and name in _INTEGERS):
            parts.append("{" + (_QUOTED_OF.get(name, name) if json else name) + "}")
        elif name == "duration_ms" and _FLOAT.fullmatch(spec):
            digits = spec[1:-1] if spec.startswith(".") else "6"
            parts.append("{" + f"{name}:.{digits or '0'}f" + "}")
        elif json and (name in _QUOTED_OF or spec.endswith("c")):
            # A string's width or repr, or a number as a character: text JSON may have
            # to escape, so the %-format renders it and the whole message is quoted.
            return None
        else:
            parts.append("{" + constant("P", "%" + spec) + " % " + name + "}")
    if not literal(fmt[end:] + suffix):
        return None
    if json:
        parts.append(_JSON_FIELDS)
    arguments = ", ".join(FIELDS + QUOTED if json else FIELDS)
    source = f"def render(prefix, {arguments}):\n    return f{''.join(parts)!r}\n"
    namespace: dict[str, Any] = dict(constants)
    exec(compile(source, "<access_log_format>", "exec"), namespace)
    render: Render = namespace["render"]
    return render
