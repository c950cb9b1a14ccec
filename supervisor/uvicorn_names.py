"""uvicorn's keyword names in supervisor.run(): mapped to serve's keys, or named exactly.

Rules: no IO. A uvicorn user's first `supervisor.run(...)` carries uvicorn's names; a
did-you-mean computed on spelling alone points at the wrong key (`ssl_keyfile` ->
'log_file'). Each name here either becomes serve's setting, value converted, or raises
ConfigError naming what serve has instead. Names serve shares with uvicorn (workers,
log_level, root_path, ...) never reach this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from supervisor.config_loader import ConfigError

Convert = Callable[[object], tuple[str, object]]


def _to(key: str) -> Convert:
    return lambda value: (key, value)


def _log_level(value: object) -> tuple[str, object]:
    # uvicorn's TRACE is below DEBUG; serve's most detailed level is debug.
    return "log_level", "debug" if value == "trace" else value


def _server_header(value: object) -> tuple[str, object]:
    # uvicorn's server_header is a switch; serve's is the header's value, None to omit it.
    return "server_header", None if value is False else "serve" if value is True else value


_MAPPED: dict[str, Convert] = {
    "log_level": _log_level,
    "server_header": _server_header,
    "timeout_keep_alive": _to("keep_alive_timeout"),
    "timeout_graceful_shutdown": _to("graceful_timeout"),
    "limit_max_requests": _to("max_requests"),
    "ssl_keyfile": _to("ssl.keyfile"),
    "ssl_certfile": _to("ssl.certfile"),
    "ssl_keyfile_password": _to("ssl.password"),
    "ssl_ca_certs": _to("ssl.ca_certs"),
    "ssl_ciphers": _to("ssl.ciphers"),
    "reload_dirs": _to("reload.dirs"),
    "reload_includes": _to("reload.include"),
    "reload_excludes": _to("reload.exclude"),
    "uds": lambda value: ("bind", (f"unix:{value}",)),
    "fd": lambda value: ("bind", (f"fd://{value}",)),
}
_INSTEAD = {
    "use_colors": "serve writes plain text or JSON lines: set log_format",
    "proxy_headers": "serve trusts proxy headers from the peers in forwarded_allow_ips",
    "loop": "serve always runs uvloop",
    "http": "serve always parses HTTP/1.1 with httptools; set http2 for HTTP/2",
    "interface": "serve detects ASGI2 apps and wraps them; WSGI is not served",
    "timeout_notify": "serve's master checks worker heartbeats: set worker_timeout",
    "headers": "serve adds no response headers but server_header and date",
}
_LOG_CONFIG_MAPPING = (
    "serve's log_config is the path of a logging.config.dictConfig file (YAML or JSON), "
    "not a mapping: write the mapping to a file and pass its path"
)


def translate(settings: Mapping[str, object]) -> dict[str, object]:
    """`settings` with uvicorn's names replaced by serve's; ConfigError for those serve
    does differently."""
    return dict(_translate_one(name, value) for name, value in settings.items())


def _translate_one(name: str, value: object) -> tuple[str, object]:
    if name == "log_config" and isinstance(value, Mapping):
        raise ConfigError(None, None, None, name, _LOG_CONFIG_MAPPING)
    if name in _INSTEAD:
        raise ConfigError(None, None, None, name, f"uvicorn's keyword: {_INSTEAD[name]}")
    convert = _MAPPED.get(name)
    return (name, value) if convert is None else convert(value)
