"""One `bind` entry as a typed listen address.

Rules: no IO and no YAML; parse_bind raises ValueError with a reason, the loader adds where
the value came from. Re-exported by supervisor.config_schema.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

BIND_FORMS = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
# RFC 1123 host name label: letters, digits and inner hyphens, 1-63 characters.
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class BindSpec:
    """One listen address. TCP specs have host and port; unix specs have path; fd specs
    name a socket inherited from the parent process."""

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bind(value: str) -> BindSpec:
    """Parse HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; raise ValueError with a reason."""
    if value.startswith("fd://"):
        number = value[len("fd://") :]
        if not (number.isascii() and number.isdigit()):
            raise ValueError(f"expected a file descriptor number in {value!r}")
        return BindSpec(kind="fd", fd=int(number))
    scheme, sep, rest = value.partition("://")
    if sep and scheme in ("http", "https", "tcp"):
        raise ValueError(f"a bind takes no scheme: write {rest.rstrip('/')!r}, not {value!r}")
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError(f"empty socket path in {value!r}")
        return BindSpec(kind="unix", path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected {BIND_FORMS}, got {value!r}")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"invalid port {port_text!r} in {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} out of range 0-65535 in {value!r}")
    return BindSpec(kind="tcp", host=_parse_host(host, value), port=port)


def _parse_host(host: str, value: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r} in {value!r}") from None
    if ":" in host:
        raise ValueError(f"IPv6 addresses need brackets, like '[::1]:8000', got {value!r}")
    if not host:
        raise ValueError(f"missing host in {value!r} (0.0.0.0 listens on every interface)")
    labels = host.removesuffix(".").split(".")
    # An all-numeric last label can only be an IPv4 address (RFC 3696 section 2).
    if labels[-1].isdigit():
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"invalid IPv4 address {host!r} in {value!r}") from None
    if len(host) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"invalid host name {host!r} in {value!r}")
    return host
