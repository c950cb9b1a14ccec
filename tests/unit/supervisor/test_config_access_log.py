"""The access log's buffer keys: sizes with units, seconds, located errors, the worker's view."""

from __future__ import annotations

import pytest

from serve.supervisor.config_loader import load_config
from tests.unit.supervisor.config_text import Load, error_of


def test_buffer_keys_reach_the_worker_settings(load: Load) -> None:
    config = load("app: m:app\naccess_log_buffer_size: 16KiB\naccess_log_flush_interval: 0.25\n")
    assert (config.access_log_buffer_size, config.access_log_flush_interval) == (16384, 0.25)
    settings = config.worker_settings()
    assert (settings.access_log_buffer_size, settings.access_log_flush_interval_s) == (16384, 0.25)
    assert load("access_log_buffer_size: 0\n").access_log_buffer_size == 0


def test_buffer_keys_from_the_environment() -> None:
    env = {"SERVE_ACCESS_LOG_BUFFER_SIZE": "1MiB", "SERVE_ACCESS_LOG_FLUSH_INTERVAL": "5"}
    config = load_config(None, env, {})
    assert (config.access_log_buffer_size, config.access_log_flush_interval) == (1024**2, 5.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "access_log_buffer_size: -1\n",
            "conf.yaml:1:25: access_log_buffer_size: expected a size in bytes >= 0 like 65536 "
            "or '64KiB', got -1",
        ),
        (
            "access_log_buffer_size: big\n",
            "conf.yaml:1:25: access_log_buffer_size: expected a size in bytes >= 0 like 65536 "
            "or '64KiB', got 'big'",
        ),
        (
            "access_log_flush_interval: 0\n",
            "conf.yaml:1:28: access_log_flush_interval: expected a number of seconds > 0, got 0",
        ),
    ],
)
def test_buffer_key_errors_are_located(load: Load, text: str, expected: str) -> None:
    assert error_of(load, text) == expected
