"""access_log_format compiled once into functions that render it with f-strings.

Rules:
- The format is a %-format over named fields (FIELDS). compile_format() gives a LineFormat
  whose `whole` renders (prefix, *ARGUMENTS) as exactly `prefix + fmt % fields + suffix`;
  a JSON line's (compile_json_line) renders the same message quoted for JSON, then the
  access fields. `whole` and `fixed` take the QUOTED fields too, so the text and JSON
  lines are called alike. Why: %-formatting parses its format at every call, about a quarter of
  the instructions of a whole access line (callgrind); an f-string is compiled once.
- A conversion becomes the f-string's plain `{name}` where that renders the same text: %s
  of any field, %d and %i of the integer fields, and a float's %f or %.Nf as `{name:.Nf}`.
  Any other (a width, a flag, %r, %x, ...) keeps its own %-format, `{P0 % name}`.
- A format is also split around its duration: `fixed` renders the text between the
  duration's conversions from every other field, and `timed` joins a prefix, those pieces
  and a duration into the whole line. A line whose other fields repeat (a keep-alive
  client asking one route for the same answer) then renders a few pieces, not all.
- The generated source names only what this module makes up: the fields (FIELDS, checked),
  the constants L0, L1, ... (the format's literal text) and P0, P1, ... (single
  conversions), and a float's precision (ASCII digits). No other text of the format is
  ever part of the source.
- A format this parser does not follow exactly, or whose compiled result differs from the
  %-format on a sample, is rendered by the %-format itself: slower, never different; its
  `fixed` keeps the fields as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, NamedTuple

# An access line's fields, in the order the compiled functions take them.
FIELDS = ("client", "request_line", "status", "bytes", "duration_ms", "method", "path")
# The string fields quoted for JSON (without their quotes), as a JSON line shows them.
QUOTED = ("client_q", "request_line_q", "method_q", "path_q")
ARGUMENTS = FIELDS + QUOTED
_INTEGERS = frozenset({"status", "bytes"})
# Python's %-conversion of a named field, or a literal "%%".
_CONVERSION = re.compile(
    r"%(?:\((?P<name>\w+)\)(?P<spec>[#0 +-]*[0-9]*(?:\.[0-9]*)?[hlL]?[diouxXeEfFgGcrsa])|%)"
)
# A float's %f or %.Nf: no flag, no width.
_FLOAT = re.compile(r"(?:\.[0-9]*)?f")
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
# What follows a JSON line's message: the access fields, in JsonFormatter's order, the
# duration alone in the middle piece.
_JSON_FIELDS = (
    '", "client": "{client_q}", "request_line": "{request_line_q}", "status": {status}'
    ', "bytes": {bytes}, "duration_ms": ',
    "{duration_ms:.3f}",
    ', "method": "{method_q}", "path": "{path_q}"}}\n',
)
_JSON_TIMED = (False, True, False)
_QUOTED_OF = dict(zip(("client", "request_line", "method", "path"), QUOTED, strict=True))

# (prefix, *ARGUMENTS) -> the line.
Render = Callable[..., str]
# (*ARGUMENTS) -> what the line shows besides its prefix and duration: the text before,
# between and after the duration's conversions.
Fixed = Callable[..., tuple[Any, ...]]
# (prefix, duration_ms, what Fixed gave) -> the line.
Timed = Callable[[str, float, tuple[Any, ...]], str]


class LineFormat(NamedTuple):
    whole: Render
    fixed: Fixed
    timed: Timed


def json_quoted(text: str) -> str:
    """`text` as a JSON string's content, without the quotes."""
    return encode_basestring(text)[1:-1]


def compile_format(fmt: str, suffix: str) -> LineFormat:
    """What renders `prefix + fmt % fields + suffix`. `fmt` must be valid for the fields
    (settings check it first)."""
    return _checked(fmt, _percent_renderer(fmt, suffix), _compiled(fmt, suffix), _SAMPLE)


def compile_json_line(fmt: str) -> LineFormat:
    """What renders a JSON access line from the message on: the prefix ends with the
    message's opening quote; the message is `fmt % fields` quoted for JSON, then come the
    access fields and a newline."""
    return _checked(fmt, _percent_json_renderer(fmt), _compiled(fmt, "", json=True), _JSON_SAMPLE)


def _checked(
    fmt: str, by_percent: Render, compiled: LineFormat | None, fields: tuple[Any, ...]
) -> LineFormat:
    named = dict(zip(FIELDS, fields, strict=True))
    sample = (*fields, *(json_quoted(named[name]) for name in _QUOTED_OF))
    expected = by_percent("", *sample)
    if compiled is None or compiled.whole("", *sample) != expected:
        return _unsplit(by_percent)
    duration_ms = sample[FIELDS.index("duration_ms")]
    if compiled.timed("", duration_ms, compiled.fixed(*sample)) != expected:
        return _unsplit(compiled.whole)
    return compiled


def _unsplit(whole: Render) -> LineFormat:
    """A format rendered whole every time: what `fixed` keeps is the arguments themselves."""
    at = FIELDS.index("duration_ms")

    def fixed(*arguments: Any) -> tuple[Any, ...]:
        return arguments

    def timed(prefix: str, duration_ms: float, arguments: tuple[Any, ...]) -> str:
        return whole(prefix, *arguments[:at], duration_ms, *arguments[at + 1 :])

    return LineFormat(whole, fixed, timed)


def _percent_renderer(fmt: str, suffix: str) -> Render:
    def render(prefix: str, *values: Any) -> str:
        # The QUOTED values follow FIELDS' and are not shown.
        return prefix + fmt % dict(zip(FIELDS, values, strict=False)) + suffix

    return render


def _percent_json_renderer(fmt: str) -> Render:
    def render(prefix: str, *values: Any) -> str:
        named = dict(zip(ARGUMENTS, values, strict=True))
        message = fmt % dict(zip(FIELDS, values, strict=False))
        return prefix + json_quoted(message) + "".join(_JSON_FIELDS).format(**named)

    return render


def _compiled(fmt: str, suffix: str, json: bool = False) -> LineFormat | None:
    """With `json`, literal text is quoted for JSON, a string field shown as it is (%s)
    takes its quoted form, and the access fields follow the message."""
    constants: dict[str, Any] = {}
    # The f-string's pieces: each with whether it shows the duration.
    parts: list[tuple[str, bool]] = []

    def constant(kind: str, value: str) -> str:
        name = f"{kind}{len(constants)}"
        constants[name] = value
        return name

    def literal(text: str) -> bool:
        # A "%" left in literal text is a conversion the pattern did not follow.
        if "%" in text:
            return False
        if text:
            parts.append(("{" + constant("L", json_quoted(text) if json else text) + "}", False))
        return True

    end = 0
    for match in _CONVERSION.finditer(fmt):
        if not literal(fmt[end : match.start()]):
            return None
        end = match.end()
        name, spec = match.group("name"), match.group("spec")
        timed = name == "duration_ms"
        if name is None:
            parts.append(("{" + constant("L", "%") + "}", False))
        elif name not in FIELDS:
            return None
        elif spec == "s" or (spec in ("d", "i") and name in _INTEGERS):
            parts.append(("{" + (_QUOTED_OF.get(name, name) if json else name) + "}", timed))
        elif timed and _FLOAT.fullmatch(spec):
            digits = spec[1:-1] if spec.startswith(".") else "6"
            parts.append(("{" + f"{name}:.{digits or '0'}f" + "}", True))
        elif json and (name in _QUOTED_OF or spec.endswith("c")):
            # A string's width or repr, or a number as a character: text JSON may have
            # to escape, so the %-format renders it and the whole message is quoted.
            return None
        else:
            parts.append(("{" + constant("P", "%" + spec) + " % " + name + "}", timed))
    if not literal(fmt[end:] + suffix):
        return None
    if json:
        parts.extend(zip(_JSON_FIELDS, _JSON_TIMED, strict=True))
    namespace: dict[str, Any] = dict(constants)
    exec(compile(_source(parts), "<access_log_format>", "exec"), namespace)
    return LineFormat(namespace["render"], namespace["fixed"], namespace["timed"])


def _source(parts: list[tuple[str, bool]]) -> str:
    """The three functions' source: render (the whole line), fixed (the pieces between
    the duration's conversions) and timed (those pieces and the duration joined)."""
    arguments = ", ".join(ARGUMENTS)
    pieces: list[str] = [""]
    joined = ["{prefix}"]
    for part, timed in parts:
        if timed:
            joined.append("{s" + str(len(pieces) - 1) + "}" + part)
            pieces.append("")
        else:
            pieces[-1] += part
    joined.append("{s" + str(len(pieces) - 1) + "}")
    names = "".join(f"s{index}, " for index in range(len(pieces)))
    whole = "{prefix}" + "".join(part for part, _ in parts)
    return (
        f"def render(prefix, {arguments}):\n    return f{whole!r}\n"
        f"def fixed({arguments}):\n    return ({', '.join(f'f{piece!r}' for piece in pieces)},)\n"
        f"def timed(prefix, duration_ms, fixed):\n    {names}= fixed\n"
        f"    return f{''.join(joined)!r}\n"
    )
