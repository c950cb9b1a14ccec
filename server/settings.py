"""What one worker needs to know, and nothing more.

Rules: no IO and no YAML here. The master builds a WorkerSettings from its Config and hands
it to each worker at fork; the worker never sees the master's config object. This module is
part of the master-worker contract: the master takes every settings type from here, so the
values WorkerSettings holds (H2Settings, WSSettings, the app type) are exported with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from serve.server.h2_settings import MAX_WINDOW_SIZE, H2Settings
from serve.server.types import ASGIApp
from serve.server.ws_settings import WSMode, WSSettings

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "MAX_WINDOW_SIZE",
    "ASGIApp",
    "CertReqs",
    "H2Settings",
    "LifespanMode",
    "Limits",
    "LogFormat",
    "SheddingSettings",
    "TLSSettings",
    "TLSVersion",
    "WSMode",
    "WSSettings",
    "WorkerSettings",
]

LifespanMode = Literal["auto", "on", "off"]
LogFormat = Literal["text", "json"]
CertReqs = Literal["none", "optional", "required"]
TLSVersion = Literal["TLSv1.2", "TLSv1.3"]

DEFAULT_ACCESS_LOG_FORMAT = (
    '%(client)s - "%(request_line)s" %(status)s %(bytes)s %(duration_ms).1fms'
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits enforced by the framing layer (RFC 9112 leaves them to us)."""

    max_request_line: int = 8192
    max_header_size: int = 65536
    max_headers: int = 100
    # None means unlimited.
    max_body_size: int | None = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """Where the certificate files are and how to use them; server.tls loads them. Paths,
    not loaded objects: every worker reads the files itself, so a new generation (SIGHUP)
    serves whatever the files hold by then."""

    certfile: str
    # None: the private key is in certfile, after or before the certificates.
    keyfile: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    cert_reqs: CertReqs = "none"
    # OpenSSL cipher list for TLS 1.2; None: Python's default (forward secrecy, no SHA-1).
    # TLS 1.3 suites are not affected: OpenSSL configures them apart.
    ciphers: str | None = None
    minimum_version: TLSVersion = "TLSv1.2"


@dataclass(frozen=True, slots=True)
class SheddingSettings:
    """Overload shedding (server.shedding): on once requests have waited over target_s for
    interval_s; new requests then get 503 with Retry-After until the wait falls back."""

    target_s: float = 0.05
    interval_s: float = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    # An import string "pkg.mod:attr" resolved in the worker after fork, or an app object
    # that reached the worker through fork (programmatic start).
    app: str | ASGIApp
    factory: bool = False
    app_dir: str = "."
    lifespan: LifespanMode = "auto"
    root_path: str = ""
    limits: Limits = Limits()
    ws: WSSettings = field(default_factory=WSSettings)
    http2: H2Settings = field(default_factory=H2Settings)
    backlog: int = 2048
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    # How long a response write may stay paused (a peer that does not read) before the
    # connection is dropped and the app's send() returns as a disconnect.
    send_timeout_s: float = 30.0
    graceful_timeout_s: float = 30.0
    limit_concurrency: int | None = None
    # Seconds an HTTP request's app may take to complete its response (server.deadline).
    request_timeout_s: float | None = None
    # Open connections per worker; the oldest idle one is closed to make room for a new one.
    max_connections: int | None = None
    # None: no shedding.
    shedding: SheddingSettings | None = None
    proxy_headers: bool = True
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    server_header: str | None = "serve"
    access_log: bool = True
    access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT
    # Access lines are written once this many bytes wait (0: each at once), or this long
    # after the oldest waiting line.
    access_log_buffer_size: int = 64 * 1024
    access_log_flush_interval_s: float = 1.0
    log_level: str = "info"
    log_format: LogFormat = "text"
    # None: stderr. A file is opened in append mode and reopened on USR1 (logrotate).
    log_file: str | None = None
    heartbeat_interval_s: float = 1.0
    # Requests after which the worker reports at once instead of at its next heartbeat, so
    # the master can start its replacement (max_requests plus this worker's jitter); 0: never.
    max_requests: int = 0
    # None: plain HTTP on every listener.
    tls: TLSSettings | None = None
    # A logging.config.dictConfig mapping applied instead of log_level, log_format and
    # log_file (the master read it from the `log_config` file); None: the built-in setup.
    log_config: Mapping[str, Any] | None = None
