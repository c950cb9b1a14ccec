"""uvicorn's keywords in supervisor.run(): translated to serve's keys, or answered exactly."""

from __future__ import annotations

import pytest

from supervisor.config_loader import ConfigError, load_config
from supervisor.uvicorn_names import translate


def test_uvicorn_keywords_become_serve_settings() -> None:
    settings = translate(
        {
            "timeout_keep_alive": 7,
            "timeout_graceful_shutdown": 12,
            "limit_max_requests": 1000,
            "server_header": False,
            "log_level": "trace",
            "reload_dirs": ["src"],
            "uds": "/run/app.sock",
            "workers": 3,
        }
    )
    config = load_config(None, {}, {**settings, "app": "m:app"}, cli_kind="keywords")
    assert config.keep_alive_timeout == 7
    assert config.graceful_timeout == 12
    assert config.max_requests == 1000
    assert config.server_header is None
    assert config.log_level == "debug"
    assert config.reload.dirs == ("src",)
    assert config.bind == ("unix:/run/app.sock",)
    assert config.workers == 3


def test_ssl_files_go_to_the_ssl_mapping() -> None:
    assert translate({"ssl_keyfile": "k.pem", "ssl_certfile": "c.pem"}) == {
        "ssl.keyfile": "k.pem",
        "ssl.certfile": "c.pem",
    }


def test_a_log_config_mapping_is_answered_with_serves_key() -> None:
    with pytest.raises(ConfigError) as info:
        translate({"log_config": {"version": 1}})
    assert str(info.value) == (
        "log_config: serve's log_config is the path of a logging.config.dictConfig file "
        "(YAML or JSON), not a mapping: write the mapping to a file and pass its path"
    )
    assert translate({"log_config": "logging.yaml"}) == {"log_config": "logging.yaml"}


@pytest.mark.parametrize(("name", "instead"), [("use_colors", "log_format"), ("loop", "uvloop")])
def test_what_serve_does_differently_is_named(name: str, instead: str) -> None:
    with pytest.raises(ConfigError) as info:
        translate({name: True})
    assert str(info.value).startswith(f"{name}: uvicorn's keyword: ")
    assert instead in str(info.value)
