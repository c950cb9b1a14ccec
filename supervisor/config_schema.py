"""The typed configuration: every key, its type, its default and one line of doc.

Rules: frozen slotted dataclasses and no IO. config_loader.py is the only code that builds
a Config from YAML, environment and CLI; configs/reference.yaml mirrors this file and a test
keeps the two in sync. Field metadata carries the doc line ("doc") used by that test and by
`serve check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from server.settings import DEFAULT_ACCESS_LOG_FORMAT, Limits, WorkerSettings
from server.types import ASGIApp

LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class Config:
    # The app: an import string here; supervisor.run() may put an app object in its place.
    app: str | ASGIApp | None = field(
        default=None, metadata=_doc("ASGI app as 'module:attr' (dotted attr allowed)")
    )
    factory: bool = field(default=False, metadata=_doc("call APP with no arguments to get the app"))
    app_dir: str = field(default=".", metadata=_doc("directory put first on sys.path for APP"))
    bind: tuple[str, ...] = field(
        default=("127.0.0.1:8000",),
        metadata=_doc("listen addresses: HOST:PORT, [IPv6]:PORT or unix:PATH (string or list)"),
    )
    backlog: int = field(default=2048, metadata=_doc("listen(2) backlog of each socket"))
    workers: int = field(default=1, metadata=_doc("number of worker processes"))
    lifespan: LifespanMode = field(default="auto", metadata=_doc("ASGI lifespan: auto, on or off"))
    log_level: LogLevel = field(
        default="info", metadata=_doc("critical, error, warning, info or debug")
    )
    log_format: LogFormat = field(default="text", metadata=_doc("log lines as text or json"))
    access_log: bool = field(default=True, metadata=_doc("log one line per request"))
    access_log_format: str = field(
        default=DEFAULT_ACCESS_LOG_FORMAT,
        metadata=_doc("%-style format over client, request_line, status, bytes, duration_ms"),
    )
    server_header: str | None = field(
        default="serve", metadata=_doc("value of the Server response header; null to omit it")
    )
    graceful_timeout: float = field(
        default=30.0, metadata=_doc("seconds a stopping worker may take to finish requests")
    )
    keep_alive_timeout: float = field(
        default=5.0, metadata=_doc("seconds an idle keep-alive connection stays open")
    )
    header_timeout: float = field(
        default=10.0, metadata=_doc("seconds a client has to send a complete request head")
    )
    boot_timeout: float = field(
        default=60.0, metadata=_doc("seconds a new worker may take to become ready")
    )
    root_path: str = field(default="", metadata=_doc("ASGI root_path (app mounted below a prefix)"))
    proxy_headers: bool = field(
        default=True, metadata=_doc("trust X-Forwarded-*/Forwarded from forwarded_allow_ips")
    )
    forwarded_allow_ips: tuple[str, ...] = field(
        default=("127.0.0.1",),
        metadata=_doc("peers whose proxy headers are trusted: IPs, CIDRs or '*'"),
    )
    limit_concurrency: int | None = field(
        default=None, metadata=_doc("open connections per worker before answering 503")
    )
    max_body_size: int | None = field(
        default=100 * 1024 * 1024,
        metadata=_doc("largest request body in bytes (413 above it); null for no limit"),
    )
    max_request_line: int = field(default=8192, metadata=_doc("longest request line (414)"))
    max_header_size: int = field(default=65536, metadata=_doc("largest request head (431)"))
    max_headers: int = field(default=100, metadata=_doc("most header fields per request (431)"))

    def worker_settings(self) -> WorkerSettings:
        """The slice of the config a worker needs (no god-object crosses the fork)."""
        if self.app is None:
            raise ValueError("Config.app is not set")
        return WorkerSettings(
            app=self.app,
            factory=self.factory,
            app_dir=self.app_dir,
            lifespan=self.lifespan,
            root_path=self.root_path,
            limits=Limits(
                max_request_line=self.max_request_line,
                max_header_size=self.max_header_size,
                max_headers=self.max_headers,
                max_body_size=self.max_body_size,
            ),
            header_timeout_s=self.header_timeout,
            keep_alive_timeout_s=self.keep_alive_timeout,
            graceful_timeout_s=self.graceful_timeout,
            limit_concurrency=self.limit_concurrency,
            proxy_headers=self.proxy_headers,
            forwarded_allow_ips=self.forwarded_allow_ips,
            server_header=self.server_header,
            access_log=self.access_log,
            access_log_format=self.access_log_format,
            log_level=self.log_level,
            log_format=self.log_format,
        )
