"""The keys of the operations surface: metrics.bind, shutdown_delay and log_config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.supervisor.config_loader import ConfigError, load_config, read_log_config
from serve.supervisor.config_schema import MetricsSpec
from serve.supervisor.fleet import Policy
from tests.unit.supervisor.config_text import Load, error_of

LOGGING = {
    "version": 1,
    "handlers": {"out": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["out"], "level": "INFO"},
}


def test_metrics_are_off_by_default_and_on_with_a_bind(load: Load) -> None:
    assert load("").metrics == MetricsSpec(bind=None)
    assert load("metrics: {bind: '127.0.0.1:9100'}\n").metrics.bind == "127.0.0.1:9100"
    assert load("metrics:\n  bind: '[::1]:0'\n").metrics.bind == "[::1]:0"
    assert load("metrics:\n").metrics.bind is None


def test_metrics_bind_from_the_environment() -> None:
    config = load_config(None, {"SERVE_METRICS_BIND": "0.0.0.0:9100"}, {})
    assert config.metrics.bind == "0.0.0.0:9100"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metrics: {bind: 'unix:/run/m.sock'}\n",
            "conf.yaml:1:17: metrics.bind: expected HOST:PORT or [IPv6]:PORT, "
            "got 'unix:/run/m.sock'",
        ),
        (
            "metrics: {bind: '127.0.0.1'}\n",
            "conf.yaml:1:17: metrics.bind: expected HOST:PORT, [IPv6]:PORT, unix:PATH or "
            "fd://N, got '127.0.0.1'",
        ),
        ("metrics: true\n", "conf.yaml:1:10: metrics: expected a mapping of bind, got True"),
        ("metrics: {port: 9100}\n", "conf.yaml:1:11: metrics.port: unknown key"),
        (
            "metrics: {bnd: '127.0.0.1:1'}\n",
            "conf.yaml:1:11: metrics.bnd: unknown key (did you mean 'bind'?)",
        ),
        (
            "shutdown_delay: -1\n",
            "conf.yaml:1:17: shutdown_delay: expected a number of seconds >= 0, got -1",
        ),
        ('log_config: ""\n', "conf.yaml:1:13: log_config: expected a file path, or null, got ''"),
    ],
)
def test_bad_values_are_located(load: Load, text: str, expected: str) -> None:
    assert error_of(load, text) == expected


def test_shutdown_delay_reaches_the_policy(load: Load) -> None:
    config = load("shutdown_delay: 15\n")
    assert config.shutdown_delay == 15.0
    assert Policy.from_config(config).shutdown_delay_s == 15.0
    assert load("").shutdown_delay == 0.0


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_log_config_file_loads_as_yaml_or_json(load: Load, suffix: str) -> None:
    Path(f"logging.{suffix}").write_text(json.dumps(LOGGING))
    config = load(f"log_config: logging.{suffix}\n")
    assert read_log_config(str(config.log_config)) == LOGGING


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (None, "logging.yaml: log_config: cannot read: No such file or directory"),
        (
            "version: 1\nroot: {level: INFO\n",
            "logging.yaml:3:1: log_config: invalid YAML: while parsing a flow mapping started at "
            "2:7; expected ',' or '}', but got '<stream end>'",
        ),
        ("- version: 1\n", "logging.yaml: log_config: expected a logging dictConfig mapping "),
        ("version: 2\n", "logging.yaml: log_config: expected a logging dictConfig mapping "),
    ],
)
def test_a_bad_log_config_file_fails_the_config(
    load: Load, contents: str | None, expected: str
) -> None:
    if contents is not None:
        Path("logging.yaml").write_text(contents)
    with pytest.raises(ConfigError) as info:
        load("log_config: logging.yaml\n")
    assert str(info.value).startswith(expected)
