"""request_timeout, max_connections and the `shedding` block: off by default, what reaches
the worker, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from server.settings import SheddingSettings
from tests.unit.supervisor.config_text import Load, error_of


def test_all_off_by_default(load: Load) -> None:
    settings = load("app: main:app\n").worker_settings()
    assert settings.request_timeout_s is None
    assert settings.max_connections is None
    assert settings.shedding is None


def test_values_reach_the_worker(load: Load) -> None:
    settings = load(
        "app: main:app\n"
        "request_timeout: 2.5\n"
        "max_connections: 900\n"
        "shedding: {enabled: true, target: 0.1, interval: 2}\n"
    ).worker_settings()
    assert settings.request_timeout_s == 2.5
    assert settings.max_connections == 900
    assert settings.shedding == SheddingSettings(target_s=0.1, interval_s=2.0)


def test_shedding_true_is_short_for_enabled_and_env_layers(load: Load) -> None:
    assert load("app: main:app\nshedding: true\n").worker_settings().shedding == (
        SheddingSettings()
    )
    settings = load(
        "app: main:app\n", env={"SERVE_SHEDDING_ENABLED": "on", "SERVE_REQUEST_TIMEOUT": "3"}
    ).worker_settings()
    assert settings.shedding == SheddingSettings()
    assert settings.request_timeout_s == 3.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "request_timeout: 0",
            "conf.yaml:2:18: request_timeout: expected a number of seconds > 0, or null, got 0",
        ),
        (
            "max_connections: 0",
            "conf.yaml:2:18: max_connections: expected a positive integer, or null, got 0",
        ),
        (
            "shedding: {target: -1}",
            "conf.yaml:2:20: shedding.target: expected a number of seconds > 0, got -1",
        ),
        (
            "shedding: {interval: 0}",
            "conf.yaml:2:22: shedding.interval: expected a number of seconds > 0, got 0",
        ),
        (
            "shedding: {targt: 1}",
            "conf.yaml:2:12: shedding.targt: unknown key (did you mean 'target'?)",
        ),
    ],
)
def test_bad_values_name_the_key(load: Load, text: str, expected: str) -> None:
    assert error_of(load, "app: main:app\n" + text + "\n").startswith(expected)
