"""The master's logging from the config in force: the built-in setup or a log_config file.

Rules: arbiter.py calls apply_logging() at start, resources.py when a reload commits; it
returns why the setup failed instead of raising. A log_config that dictConfig rejected may have been
applied halfway, so the master then falls back to the built-in setup on stderr, where its
error is seen. Workers apply the same settings themselves (server.entry), from the mapping
their generation's WorkerSettings carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from serve.server.logs import configure_logging
from serve.supervisor.config_loader import ConfigError, read_log_config
from serve.supervisor.config_schema import Config

LogFormat = Literal["text", "json"]


def apply_logging(config: Config) -> str | None:
    """Configure the master's logging from `config`; None, or one line saying what failed."""
    return _configure(config.log_level, config.log_format, config.log_file, config.log_config)


def try_log_config(path: str, level: str, log_format: LogFormat) -> str | None:
    """Apply the log_config file `path` in this process (`serve check`'s child); None, or
    one line saying what failed."""
    return _configure(level, log_format, None, path)


def _configure(
    level: str, log_format: LogFormat, log_file: str | None, log_config_path: str | None
) -> str | None:
    try:
        log_config = read_log_config(log_config_path) if log_config_path else None
    except ConfigError as exc:
        return str(exc)
    try:
        configure_logging(level, log_format, log_file, log_config=log_config)
    except OSError as exc:
        return f"cannot open log_file {log_file}: {exc.strerror or exc}"
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        # dictConfig's errors: it names the part ("Unable to configure handler 'file'") and
        # chains the cause.
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        configure_logging(level, log_format)
        return f"log_config {log_config_path}: {exc}{cause}"
    return None


def logging_changed(previous: Iterable[Config], config: Config) -> bool:
    """Whether a committed reload must configure logging again. A log_config file is
    always applied again: its contents may have changed under the same path."""
    keys = (config.log_level, config.log_format, config.log_file, config.log_config)
    return config.log_config is not None or any(
        (old.log_level, old.log_format, old.log_file, old.log_config) != keys for old in previous
    )
