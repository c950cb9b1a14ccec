"""Turn one raw config value into its typed form, or say why not.

Rules: no IO and no YAML; the loader says where a value came from, this module says what is
wrong with it. A converter per Config field is built from the field's annotation; the
per-key rules (bounds, sizes, formats) live in the tables below, checks of a typed value
(addresses, formats, paths) in config_checks.py. Keys are the
schema's LEAF_KEYS: nested ones are dotted ("reload.dirs"). Values from YAML or
serve.run() must already have the right type (`workers: "4"` is an error); text from
the environment or a flag is parsed: booleans true/false/1/0/yes/no/on/off, null keys take
null/none/"", bind and forwarded_allow_ips take comma-separated lists. Modes (umask,
socket_mode) written as text are always octal, with or without 0o, as in `umask 022`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Literal

from serve.supervisor.config_checks import CHECKS, BadValueError
from serve.supervisor.config_schema import LEAF_KEYS, NESTED, Config

SIZE_KEYS = frozenset(
    {
        "max_body_size",
        "max_header_size",
        "max_worker_memory",
        "access_log_buffer_size",
        "ws_max_size",
        "http2.initial_window_size",
        "http2.max_header_list_size",
    }
)
# Permission bits, octal when written as text.
OCTAL_KEYS = frozenset({"umask", "socket_mode"})
# Zero would reject every client (header_timeout) or new worker (boot_timeout,
# worker_timeout), drop every response that fills a socket buffer (send_timeout), answer
# every request 504 (request_timeout), shed everything (shedding.*), spin the master
# (health_interval) or a worker's flushes (access_log_flush_interval); zero is
# meaningful for the others:
# stop at once (graceful_timeout), no keep-alive (keep_alive_timeout).
_POSITIVE_SECONDS_KEYS = frozenset(
    {
        "header_timeout",
        "send_timeout",
        "boot_timeout",
        "worker_timeout",
        "health_interval",
        "request_timeout",
        "shedding.target",
        "shedding.interval",
        "access_log_flush_interval",
    }
)
# Counts where 0 means "off".
_COUNT_KEYS = frozenset({"max_requests", "max_requests_jitter", "access_log_buffer_size"})
# A user or group may be a numeric id; YAML reads `user: 1000` as an int.
_ID_KEYS = frozenset({"user", "group"})
# Keys whose plain string is a comma-separated list in every layer (as uvicorn's flag is).
_COMMA_KEYS = frozenset({"forwarded_allow_ips"})

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_NULL_WORDS = frozenset({"null", "none", ""})
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1} | {
    f"{prefix}{suffix}": base**power
    for power, prefix in enumerate("kmgt", start=1)
    for suffix, base in (("b", 1000), ("ib", 1024))
}
_SIZE_FORMS = "a positive size in bytes like 65536, '64KiB' or '10MB'"
_OCTAL_FORMS = "an octal mode from 0 to 0o777 like '0o022' or '022'"
_OCTAL_MAX = 0o777


@dataclasses.dataclass(frozen=True, slots=True)
class RawValue:
    """One value as a layer supplied it, before conversion."""

    value: object
    # Text from the environment or a flag is parsed ("4" -> 4). Python objects, such as an
    # app, are only accepted from serve.serve.run() keywords.
    text: bool = False
    python: bool = False


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else repr(value)


def _expected(what: str, value: object, index: int | None = None) -> BadValueError:
    return BadValueError(f"expected {what}, got {_show(value)}", index, what)


def parse_size(text: str) -> int:
    """'64KiB' -> 65536, '10MB' -> 10000000, '512' -> 512; ValueError otherwise."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    number, unit = match.groups()
    from fractions import Fraction  # exact decimals; imports decimal, so only when needed

    return int(Fraction(number) * _SIZE_UNITS[(unit or "b").lower()])


# Converters: one per Config field, built from its annotation; each takes a RawValue and returns
# the typed value or raises BadValueError.
_Converter = Callable[[RawValue], object]


def _to_bool(raw: RawValue) -> bool:
    value = raw.value
    if isinstance(value, bool):
        return value
    if raw.text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
    raise _expected("true or false", value)


def parse_octal(text: str) -> int:
    """'0o022', '022' and '22' -> 18; ValueError otherwise."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or not set(digits) <= set("01234567"):
        raise ValueError(text)
    return int(digits, 8)


def _int_converter(key: str) -> _Converter:
    if key in OCTAL_KEYS:
        return _octal_converter
    what = _SIZE_FORMS if key in SIZE_KEYS else "a positive integer"
    low = 1
    if key in _COUNT_KEYS:
        what, low = (
            (
                "a size in bytes >= 0 like 65536 or '64KiB'"
                if key in SIZE_KEYS
                else "an integer >= 0"
            ),
            0,
        )

    def convert(raw: RawValue) -> int:
        value = raw.value
        if isinstance(value, str) and (raw.text or key in SIZE_KEYS):
            try:
                value = parse_size(value) if key in SIZE_KEYS else int(value.strip())
            except ValueError:
                raise _expected(what, raw.value) from None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _expected(what, raw.value)
        return value

    return convert


def _octal_converter(raw: RawValue) -> int:
    value = raw.value
    if isinstance(value, str) and raw.text:
        try:
            value = parse_octal(value)
        except ValueError:
            raise _expected(_OCTAL_FORMS, raw.value) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _OCTAL_MAX:
        raise _expected(_OCTAL_FORMS, raw.value)
    return value


def _seconds_converter(key: str) -> _Converter:
    what = "a number of seconds " + ("> 0" if key in _POSITIVE_SECONDS_KEYS else ">= 0")

    def convert(raw: RawValue) -> float:
        value = raw.value
        if raw.text and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _expected(what, raw.value) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _expected(what, raw.value)
        low_ok = value > 0 if key in _POSITIVE_SECONDS_KEYS else value >= 0
        if not (math.isfinite(value) and low_ok):
            raise _expected(what, raw.value)
        return float(value)

    return convert


def _choice_converter(choices: tuple[str, ...]) -> _Converter:
    what = "one of " + ", ".join(repr(choice) for choice in choices)
    # Case does not matter: `tlsv1.3` is TLSv1.3, as `INFO` is info.
    spelled = {choice.lower(): choice for choice in choices}

    def convert(raw: RawValue) -> str:
        value = raw.value
        # YAML 1.1 reads a bare on/off as a boolean; `lifespan: off` means "off".
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"
        if isinstance(value, str) and value.strip().lower() in spelled:
            return spelled[value.strip().lower()]
        raise _expected(what, raw.value)

    return convert


def _to_str(raw: RawValue) -> str:
    if isinstance(raw.value, str):
        return raw.value
    raise _expected("a string", raw.value)


def _to_name_or_id(raw: RawValue) -> str:
    value = raw.value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _expected("a name or a numeric id", value)


def _str_tuple_converter(key: str) -> _Converter:
    def convert(raw: RawValue) -> tuple[str, ...]:
        value = raw.value
        if isinstance(value, str):
            split = raw.text or key in _COMMA_KEYS
            items: list[object] = [p.strip() for p in value.split(",")] if split else [value]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _expected("a string or a list of strings", value)
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise _expected("a non-empty string", item, index)
        return tuple(typing.cast(list[str], items))

    return convert


def _to_app(raw: RawValue) -> object:
    value = raw.value
    if raw.python and callable(value):
        return value
    if raw.python and not isinstance(value, str):
        raise _expected("an import string 'module:attr' or an ASGI app", value)
    return _to_str(raw)


def _optional(convert: _Converter) -> _Converter:
    def convert_optional(raw: RawValue) -> object:
        value = raw.value
        if value is None or (
            raw.text and isinstance(value, str) and value.strip().lower() in _NULL_WORDS
        ):
            return None
        try:
            return convert(raw)
        except BadValueError as exc:
            if not exc.what:
                raise
            raise _expected(f"{exc.what}, or null", value, exc.index) from None

    return convert_optional


def _converter_for(key: str, hint: object) -> _Converter:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        inner: _Converter = _to_app
        if not any(typing.get_origin(arg) is collections.abc.Callable for arg in members):
            (member,) = members
            inner = _converter_for(key, member)
        return _optional(inner) if type(None) in args else inner
    if origin is Literal:
        return _choice_converter(tuple(str(arg) for arg in args))
    if origin is tuple and args == (str, ...):
        return _str_tuple_converter(key)
    simple: dict[object, _Converter] = {
        bool: _to_bool,
        int: _int_converter(key),
        float: _seconds_converter(key),
        str: _to_name_or_id if key in _ID_KEYS else _to_str,
    }
    if hint not in simple:
        raise TypeError(f"Config.{key}: no converter for {hint!r}")
    return simple[hint]


@functools.cache
def _converters() -> dict[str, _Converter]:
    hints: dict[str, object] = {}
    for name, hint in typing.get_type_hints(Config).items():
        if name in NESTED:
            nested = typing.get_type_hints(NESTED[name])
            hints.update({f"{name}.{sub}": sub_hint for sub, sub_hint in nested.items()})
        else:
            hints[name] = hint
    return {key: _converter_for(key, hints[key]) for key in LEAF_KEYS}


def convert(key: str, raw: RawValue) -> object:
    """The typed, checked value of `key` (a LEAF_KEYS name); raise BadValueError."""
    value = _converters()[key](raw)
    if key in CHECKS and value is not None:
        CHECKS[key](value)
    return value
