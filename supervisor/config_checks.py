"""Checks of one typed config value beyond its type: addresses, formats, paths.

Rules: no IO and no YAML. Each check takes the converted value of one key (a LEAF_KEYS
name, never None: a null key is not checked) and raises BadValueError with a one-line
reason; index names the bad item of a list. config_values.py runs them after converting.
Files named by the config are not opened here: the loader loads the `ssl` files once the
whole config is known, because a key and its password are only checked together.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from typing import Any

from serve.server.settings import MAX_WINDOW_SIZE
from serve.supervisor.config_bind import parse_bind

ACCESS_LOG_FIELDS = ("client", "request_line", "status", "bytes", "duration_ms", "method", "path")
_ACCESS_LOG_SAMPLE = dict(
    zip(
        ACCESS_LOG_FIELDS,
        ("127.0.0.1:51000", "GET / HTTP/1.1", 200, 13, 0.25, "GET", "/"),
        strict=True,
    )
)


@dataclasses.dataclass(eq=False)
class BadValueError(Exception):
    """A rejected value; the caller adds where it came from. `what` is set for type errors."""

    message: str
    index: int | None = None
    what: str = ""


def _check_app(value: object) -> None:
    if not isinstance(value, str):
        return
    module, _, attr = value.partition(":")
    parts = [*module.split("."), *attr.split(".")]
    if not (module and attr and all(part.isidentifier() for part in parts)):
        raise BadValueError(f"expected 'module:attr' like 'myapp.main:app', got {value!r}")


def _check_bind(value: tuple[str, ...]) -> None:
    if not value:
        raise BadValueError("needs at least one address")
    seen: set[str] = set()
    for index, entry in enumerate(value):
        try:
            canonical = str(parse_bind(entry))
        except ValueError as exc:
            raise BadValueError(str(exc), index) from None
        if canonical in seen:
            raise BadValueError(f"duplicate address {entry!r}", index)
        seen.add(canonical)


def _check_allow_ips(value: tuple[str, ...]) -> None:
    for index, entry in enumerate(value):
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry)
        except ValueError as exc:
            raise BadValueError(f"expected an IP address, a CIDR or '*': {exc}", index) from None


class _PositionalFieldError(Exception):
    """The access log format used an unnamed conversion such as %s."""


class _AccessLogSample(dict[str, object]):
    """Formatting `%s` with a mapping formats the mapping itself; catch that mistake."""

    def __str__(self) -> str:
        raise _PositionalFieldError

    __repr__ = __str__


def _check_access_log_format(value: str) -> None:
    try:
        value % _AccessLogSample(_ACCESS_LOG_SAMPLE)
    except KeyError as exc:
        known = ", ".join(ACCESS_LOG_FIELDS)
        raise BadValueError(f"unknown field {exc.args[0]!r} (known: {known})") from None
    except _PositionalFieldError:
        raise BadValueError("use named fields like %(status)s, not positional %s") from None
    except (ValueError, TypeError) as exc:
        raise BadValueError(f"not a valid %-format: {exc}") from None


def _check_root_path(value: str) -> None:
    if value and not value.startswith("/"):
        raise BadValueError(f"expected '' or a path starting with '/', got {value!r}")


def _check_server_header(value: str) -> None:
    # CR or LF would let the config inject headers into every response (RFC 9110 5.5).
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        raise BadValueError(f"control characters are not allowed in a header value, got {value!r}")


def _check_metrics_bind(value: str) -> None:
    try:
        spec = parse_bind(value)
    except ValueError as exc:
        raise BadValueError(str(exc)) from None
    if spec.kind != "tcp":
        raise BadValueError(f"expected HOST:PORT or [IPv6]:PORT, got {value!r}")


def _check_path(value: str) -> None:
    if not value.strip():
        raise BadValueError("expected a file path, or null, got ''")


def _check_window_size(value: int) -> None:
    # RFC 9113 section 6.5.2: larger windows are a FLOW_CONTROL_ERROR.
    if value > MAX_WINDOW_SIZE:
        raise BadValueError(f"must be at most {MAX_WINDOW_SIZE} (2^31 - 1), got {value}")


def _non_empty(what: str) -> Callable[[tuple[str, ...]], None]:
    def check(value: tuple[str, ...]) -> None:
        if not value:
            raise BadValueError(f"needs at least one {what}")

    return check


CHECKS: dict[str, Callable[[Any], None]] = {
    "app": _check_app,
    "bind": _check_bind,
    "forwarded_allow_ips": _check_allow_ips,
    "access_log_format": _check_access_log_format,
    "root_path": _check_root_path,
    "server_header": _check_server_header,
    "pidfile": _check_path,
    "log_file": _check_path,
    "log_config": _check_path,
    "metrics.bind": _check_metrics_bind,
    "ssl.certfile": _check_path,
    "ssl.keyfile": _check_path,
    "ssl.ca_certs": _check_path,
    "reload.dirs": _non_empty("directory"),
    "reload.include": _non_empty("pattern"),
    "http2.initial_window_size": _check_window_size,
}
