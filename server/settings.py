"""What one worker needs to know, and nothing more.

Rules: no IO and no YAML here. The master builds a WorkerSettings from its Config and hands
it to each worker at fork; the worker never sees the master's config object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.types import ASGIApp

LifespanMode = Literal["auto", "on", "off"]
LogFormat = Literal["text", "json"]

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
class WorkerSettings:
    # An import string "pkg.mod:attr" resolved in the worker after fork, or an app object
    # that reached the worker through fork (programmatic start).
    app: str | ASGIApp
    factory: bool = False
    app_dir: str = "."
    lifespan: LifespanMode = "auto"
    root_path: str = ""
    limits: Limits = Limits()
    backlog: int = 2048
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    graceful_timeout_s: float = 30.0
    limit_concurrency: int | None = None
    proxy_headers: bool = True
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    server_header: str | None = "serve"
    access_log: bool = True
    access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT
    log_level: str = "info"
    log_format: LogFormat = "text"
    # None: stderr. A file is opened in append mode and reopened on USR1 (logrotate).
    log_file: str | None = None
    heartbeat_interval_s: float = 1.0
    # Requests after which the worker reports at once instead of at its next heartbeat, so
    # the master can start its replacement (max_requests plus this worker's jitter); 0: never.
    max_requests: int = 0
