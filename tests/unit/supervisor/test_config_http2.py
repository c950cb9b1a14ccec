"""The `http2` block: defaults, shorthand, sizes, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from serve.server.settings import H2Settings
from serve.supervisor.config_schema import HTTP2Spec
from tests.unit.supervisor.config_text import Load, error_of


def test_the_spec_and_the_worker_settings_have_the_same_fields() -> None:
    spec = [(f.name, f.default) for f in dataclasses.fields(HTTP2Spec)]
    settings = [(f.name, f.default) for f in dataclasses.fields(H2Settings)]
    assert spec == settings


def test_off_by_default(load: Load) -> None:
    assert load("app: main:app\n").worker_settings().http2 == H2Settings()
    assert H2Settings().enabled is False


def test_a_full_block_reaches_the_worker(load: Load) -> None:
    config = load(
        "app: main:app\n"
        "http2:\n"
        "  enabled: true\n"
        "  max_concurrent_streams: 32\n"
        "  initial_window_size: 1MiB\n"
        "  max_header_list_size: 16KiB\n"
    )
    assert config.worker_settings().http2 == H2Settings(True, 32, 1024 * 1024, 16 * 1024)


def test_true_is_short_for_enabled_and_env_and_flags_layer(load: Load) -> None:
    assert load("app: main:app\nhttp2: true\n").http2.enabled
    config = load(
        "app: main:app\nhttp2: {max_concurrent_streams: 8}\n",
        env={"SERVE_HTTP2_ENABLED": "yes"},
    )
    assert config.http2 == HTTP2Spec(enabled=True, max_concurrent_streams=8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "http2: {max_concurrent_streams: 0}",
            "conf.yaml:2:33: http2.max_concurrent_streams: expected a positive integer, got 0",
        ),
        (
            "http2: {initial_window_size: 3GiB}",
            "conf.yaml:2:30: http2.initial_window_size: must be at most 2147483647 (2^31 - 1),"
            " got 3221225472",
        ),
        (
            "http2: {max_header_list_size: lots}",
            "conf.yaml:2:31: http2.max_header_list_size: expected a positive size in bytes like"
            " 65536, '64KiB' or '10MB', got 'lots'",
        ),
        (
            "http2: {enable: true}",
            "conf.yaml:2:9: http2.enable: unknown key (did you mean 'enabled'?)",
        ),
        ("http2: maybe", "conf.yaml:2:8: http2: expected a mapping of enabled,"),
    ],
)
def test_bad_values_name_the_key(load: Load, text: str, expected: str) -> None:
    assert error_of(load, "app: main:app\n" + text + "\n").startswith(expected)
