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

# prefix, then the FIELDS' values.
Render = Callable[..., str]


def compile_format(fmt: str, suffix: str) -> Render:
    """What renders `prefix + fmt % fields + suffix` for (prefix, *fields in FIELDS order).
    `fmt` must be valid for the fields (settings check it first)."""
    by_percent = _percent_renderer(fmt, suffix)
    compiled = _compiled(fmt, suffix)
    if compiled is None or compiled("", *_SAMPLE) != by_percent("", *_SAMPLE):
        return by_percent
    return compiled


def _percent_renderer(fmt: str, suffix: str) -> Render:
    def render(prefix: str, *values: Any) -> str:
        return prefix + fmt % dict(zip(FIELDS, values, strict=True)) + suffix

    return render


def _compiled(fmt: str, suffix: str) -> Render | None:
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
            parts.append("{" + constant("L", text) + "}")
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
            parts.append("{" + name + "}")
        elif name == "duration_ms" and _FLOAT.fullmatch(spec):
            digits = spec[1:-1] if spec.startswith(".") else "6"
            parts.append("{" + f"{name}:.{digits or '0'}f" + "}")
        else:
            parts.append("{" + constant("P", "%" + spec) + " % " + name + "}")
    if not literal(fmt[end:] + suffix):
        return None
    source = f"def render(prefix, {', '.join(FIELDS)}):\n    return f{''.join(parts)!r}\n"
    namespace: dict[str, Any] = dict(constants)
    exec(compile(source, "<access_log_format>", "exec"), namespace)
    render: Render = namespace["render"]
    return render
