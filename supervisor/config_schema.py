"""The typed configuration: every key, its type, its default and one line of doc.

Rules: frozen slotted dataclasses and no IO. config_loader.py is the only code that builds
a Config from YAML, environment and CLI; configs/reference.yaml mirrors this file and a test
keeps the two in sync. Field metadata carries the doc line ("doc") used by that test and by
`serve check`. supervisor.config_bind turns one `bind` entry into a typed address.
A nested mapping (`reload:`, `ssl:`, `metrics:`, `shedding:`) is its own frozen dataclass,
listed in NESTED so the loader and converters find its fields; one with an `enabled` field
may also be written as true/false.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from serve.server.settings import (
    DEFAULT_ACCESS_LOG_FORMAT,
    ASGIApp,
    CertReqs,
    H2Settings,
    Limits,
    TLSSettings,
    TLSVersion,
    WorkerSettings,
    WSMode,
    WSSettings,
)
from serve.supervisor.config_shedding import SheddingSpec

LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]
AcceptBalance = Literal["reuseport", "shared"]


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class ReloadSpec:
    """Development reload: watch files and roll the workers when one changes."""

    enabled: bool = field(
        default=False, metadata=_doc("roll the workers when a watched file changes")
    )
    dirs: tuple[str, ...] = field(default=(".",), metadata=_doc("directories watched, recursively"))
    include: tuple[str, ...] = field(
        default=("*.py",), metadata=_doc("file name patterns that trigger a reload")
    )
    exclude: tuple[str, ...] = field(
        default=(".*", "*.pyc", "__pycache__"),
        metadata=_doc("file or directory name patterns never watched (win over include)"),
    )


@dataclass(frozen=True, slots=True)
class SSLSpec:
    """TLS on every listener, on when certfile is set; files are read again on each reload."""

    certfile: str | None = field(
        default=None,
        metadata=_doc("PEM certificate chain, the server's own first; null: plain HTTP"),
    )
    keyfile: str | None = field(
        default=None, metadata=_doc("PEM private key; null: the key is in certfile")
    )
    password: str | None = field(
        default=None, repr=False, metadata=_doc("password of an encrypted private key")
    )
    ca_certs: str | None = field(
        default=None, metadata=_doc("PEM CA certificates that client certificates must chain to")
    )
    cert_reqs: CertReqs = field(
        default="none", metadata=_doc("client certificates: none, optional or required")
    )
    ciphers: str | None = field(
        default=None, metadata=_doc("OpenSSL cipher list for TLS 1.2; null: Python's default")
    )
    minimum_version: TLSVersion = field(
        default="TLSv1.2", metadata=_doc("oldest protocol accepted: TLSv1.2 or TLSv1.3")
    )

    def settings(self) -> TLSSettings | None:
        """What a worker needs to load the files; None when TLS is off."""
        if self.certfile is None:
            return None
        return TLSSettings(*(getattr(self, f.name) for f in fields(self)))  # same fields


@dataclass(frozen=True, slots=True)
class HTTP2Spec:
    """HTTP/2: ALPN h2 with TLS; h2c (prior knowledge or Upgrade) on cleartext listeners."""

    enabled: bool = field(default=False, metadata=_doc("serve HTTP/2 beside HTTP/1.1"))
    max_concurrent_streams: int = field(
        default=100, metadata=_doc("streams a client may have open at once per connection")
    )
    initial_window_size: int = field(
        default=256 * 1024, metadata=_doc("request body bytes per stream sent ahead of the app")
    )
    max_header_list_size: int = field(
        default=65536, metadata=_doc("largest decoded request header list in bytes")
    )

    def settings(self) -> H2Settings:
        return H2Settings(*(getattr(self, f.name) for f in fields(self)))  # same fields


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """The master's own HTTP listener for Prometheus and health probes; off by default."""

    bind: str | None = field(
        default=None,
        metadata=_doc("HOST:PORT serving /metrics, /healthz and /readyz; null: off"),
    )


@dataclass(frozen=True, slots=True)
class Config:
    # The app: an import string here; serve.run() may put an app object in its place.
    app: str | ASGIApp | None = field(
        default=None, metadata=_doc("ASGI app as 'module:attr' (dotted attr allowed)")
    )
    factory: bool = field(default=False, metadata=_doc("call APP with no arguments to get the app"))
    app_dir: str = field(default=".", metadata=_doc("directory put first on sys.path for APP"))
    bind: tuple[str, ...] = field(
        default=("127.0.0.1:8000",),
        metadata=_doc(
            "listen addresses: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (one or a list)"
        ),
    )
    backlog: int = field(default=2048, metadata=_doc("listen(2) backlog of each socket"))
    reuse_port: bool = field(
        default=False,
        metadata=_doc("let other processes bind the TCP addresses too (SO_REUSEPORT)"),
    )
    accept_balance: AcceptBalance = field(
        default="reuseport",
        metadata=_doc("reuseport: a TCP socket per worker, shared: one socket all workers share"),
    )
    socket_mode: int | None = field(
        default=None, metadata=_doc("permissions of unix sockets, octal like '0o660'; null: umask")
    )
    ssl: SSLSpec = field(
        default=SSLSpec(), metadata=_doc("TLS on every listener: https when ssl.certfile is set")
    )
    http2: HTTP2Spec = field(default=HTTP2Spec(), metadata=_doc("HTTP/2 (h2 and h2c)"))
    workers: int = field(default=1, metadata=_doc("number of worker processes"))
    preload: bool = field(
        default=False,
        metadata=_doc("import the app once per generation in a template that forks the workers"),
    )
    lifespan: LifespanMode = field(default="auto", metadata=_doc("ASGI lifespan: auto, on or off"))
    log_level: LogLevel = field(
        default="info", metadata=_doc("critical, error, warning, info or debug")
    )
    log_format: LogFormat = field(default="text", metadata=_doc("log lines as text or json"))
    log_file: str | None = field(
        default=None,
        metadata=_doc("append log lines to this file (reopened on USR1); null: stderr"),
    )
    log_config: str | None = field(
        default=None,
        metadata=_doc("logging dictConfig file (YAML or JSON) used instead of the log_* keys"),
    )
    access_log: bool = field(default=True, metadata=_doc("log one line per request"))
    access_log_format: str = field(
        default=DEFAULT_ACCESS_LOG_FORMAT,
        metadata=_doc("%-style format over client, request_line, status, bytes, duration_ms"),
    )
    access_log_buffer_size: int = field(
        default=64 * 1024,
        metadata=_doc("bytes of access lines a worker gathers per write; 0: none"),
    )
    access_log_flush_interval: float = field(
        default=1.0, metadata=_doc("seconds an access line may wait in the buffer before a write")
    )
    server_header: str | None = field(
        default="serve", metadata=_doc("value of the Server response header; null to omit it")
    )
    graceful_timeout: float = field(
        default=30.0, metadata=_doc("seconds a stopping worker may take to finish requests")
    )
    shutdown_delay: float = field(
        default=0.0,
        metadata=_doc("seconds serve keeps serving after TERM, /readyz at 503, before draining"),
    )
    keep_alive_timeout: float = field(
        default=5.0, metadata=_doc("seconds an idle keep-alive connection stays open")
    )
    header_timeout: float = field(
        default=10.0, metadata=_doc("seconds a client has to send a complete request head")
    )
    send_timeout: float = field(
        default=30.0,
        metadata=_doc("seconds a response write may wait on a client that does not read"),
    )
    boot_timeout: float = field(
        default=60.0, metadata=_doc("seconds a new worker may take to become ready")
    )
    worker_timeout: float = field(
        default=30.0, metadata=_doc("seconds without a heartbeat before a worker is killed")
    )
    health_interval: float = field(
        default=1.0, metadata=_doc("seconds between two checks of worker memory and heartbeat")
    )
    max_requests: int = field(
        default=0, metadata=_doc("requests a worker serves before it is replaced; 0: no limit")
    )
    max_requests_jitter: int = field(
        default=0, metadata=_doc("random 0..N added to max_requests per worker (spreads restarts)")
    )
    max_worker_memory: int | None = field(
        default=None,
        metadata=_doc("worker RSS in bytes above which it is replaced; null: no limit"),
    )
    reload: ReloadSpec = field(
        default=ReloadSpec(), metadata=_doc("development reload on file changes")
    )
    metrics: MetricsSpec = field(
        default=MetricsSpec(), metadata=_doc("Prometheus metrics and health checks from the master")
    )
    pidfile: str | None = field(
        default=None, metadata=_doc("file holding the master's pid (for serve reload|stop|status)")
    )
    user: str | None = field(
        default=None, metadata=_doc("user (name or uid) to run as after binding; needs root")
    )
    group: str | None = field(
        default=None, metadata=_doc("group (name or gid) to run as; default: the user's group")
    )
    umask: int | None = field(
        default=None, metadata=_doc("process umask, octal like '0o022'; null: inherited")
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
    max_connections: int | None = field(
        default=None,
        metadata=_doc("open connections per worker; the oldest idle one makes room; null: no cap"),
    )
    request_timeout: float | None = field(
        default=None,
        metadata=_doc("seconds an app may take to complete a response (then 504); null: none"),
    )
    shedding: SheddingSpec = field(
        default=SheddingSpec(), metadata=_doc("503 new requests while requests wait too long")
    )
    max_body_size: int | None = field(
        default=100 * 1024 * 1024,
        metadata=_doc("largest request body in bytes (413 above it); null for no limit"),
    )
    max_request_line: int = field(default=8192, metadata=_doc("longest request line (414)"))
    max_header_size: int = field(default=65536, metadata=_doc("largest request head (431)"))
    max_headers: int = field(default=100, metadata=_doc("most header fields per request (431)"))
    ws: WSMode = field(
        default="auto", metadata=_doc("WebSockets: auto or wsproto (on), none (plain HTTP)")
    )
    ws_max_size: int = field(
        default=16 * 1024 * 1024, metadata=_doc("largest WebSocket message in bytes (close 1009)")
    )
    ws_ping_interval: float | None = field(
        default=20.0, metadata=_doc("seconds between keepalive pings; null: no pings")
    )
    ws_ping_timeout: float | None = field(
        default=20.0, metadata=_doc("seconds a ping waits for its pong before the close")
    )
    ws_per_message_deflate: bool = field(
        default=True, metadata=_doc("compress WebSocket messages when the client offers it")
    )

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
            limits=_limits(self),
            ws=_ws_settings(self),
            http2=self.http2.settings(),
            backlog=self.backlog,
            header_timeout_s=self.header_timeout,
            keep_alive_timeout_s=self.keep_alive_timeout,
            send_timeout_s=self.send_timeout,
            graceful_timeout_s=self.graceful_timeout,
            limit_concurrency=self.limit_concurrency,
            request_timeout_s=self.request_timeout,
            max_connections=self.max_connections,
            shedding=self.shedding.settings(),
            proxy_headers=self.proxy_headers,
            forwarded_allow_ips=self.forwarded_allow_ips,
            server_header=self.server_header,
            access_log=self.access_log,
            access_log_format=self.access_log_format,
            access_log_buffer_size=self.access_log_buffer_size,
            access_log_flush_interval_s=self.access_log_flush_interval,
            log_level=self.log_level,
            log_format=self.log_format,
            log_file=self.log_file,
            tls=self.ssl.settings(),
        )


# The flat keys that make up one settings value of the worker (the nested keys' specs
# build theirs: SSLSpec.settings() and the like).
def _limits(config: Config) -> Limits:
    return Limits(
        max_request_line=config.max_request_line,
        max_header_size=config.max_header_size,
        max_headers=config.max_headers,
        max_body_size=config.max_body_size,
    )


def _ws_settings(config: Config) -> WSSettings:
    return WSSettings(
        mode=config.ws,
        max_size=config.ws_max_size,
        ping_interval_s=config.ws_ping_interval,
        ping_timeout_s=config.ws_ping_timeout,
        per_message_deflate=config.ws_per_message_deflate,
    )


# Keys whose value is a nested mapping, each with its own dataclass of sub-keys.
NESTED: dict[str, type[Any]] = {
    "reload": ReloadSpec,
    "ssl": SSLSpec,
    "http2": HTTP2Spec,
    "metrics": MetricsSpec,
    "shedding": SheddingSpec,
}


def _leaf_keys() -> tuple[str, ...]:
    keys: list[str] = []
    for f in fields(Config):
        if f.name in NESTED:
            keys.extend(f"{f.name}.{sub.name}" for sub in fields(NESTED[f.name]))
        else:
            keys.append(f.name)
    return tuple(keys)


# Every settable value, nested ones dotted ("reload.dirs"), in field order.
LEAF_KEYS = _leaf_keys()
