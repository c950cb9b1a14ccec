"""The operations keys: health limits, identity, modes, pidfile, log file and nested reload."""

from __future__ import annotations

import pytest

from serve.supervisor.config_loader import ConfigError, config_as_yaml, load_config
from serve.supervisor.config_schema import Config, ReloadSpec
from serve.supervisor.config_values import parse_octal
from tests.unit.supervisor.config_text import Load, error_of


def test_new_keys_typed_from_yaml(load: Load) -> None:
    config = load(
        "worker_timeout: 5\nhealth_interval: 0.25\nmax_requests: 50\nmax_requests_jitter: 5\n"
        "max_worker_memory: 512MiB\npidfile: run/serve.pid\nuser: nobody\ngroup: 65534\n"
        "reuse_port: true\nlog_file: serve.log\nbind: [fd://3, 127.0.0.1:0]\n"
    )
    assert config.worker_timeout == 5.0
    assert config.health_interval == 0.25
    assert (config.max_requests, config.max_requests_jitter) == (50, 5)
    assert config.max_worker_memory == 512 * 1024**2
    assert config.pidfile == "run/serve.pid"
    # A numeric group id is kept as text; privileges.py resolves names and ids alike.
    assert (config.user, config.group) == ("nobody", "65534")
    assert config.reuse_port is True
    assert config.log_file == "serve.log"
    assert config.bind == ("fd://3", "127.0.0.1:0")


def test_log_file_reaches_the_worker_settings() -> None:
    config = load_config(None, {}, {"app": "a:app", "log_file": "x.log"})
    assert config.worker_settings().log_file == "x.log"


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("umask: 022\n", 0o22),
        ("umask: 22\n", 0o22),
        ("umask: 0o027\n", 0o27),
        ('umask: "0o027"\n', 0o27),
        ("umask: '077'\n", 0o77),
        ("umask: 0\n", 0),
        ("socket_mode: 660\n", 0o660),
        ("socket_mode: 0o777\n", 0o777),
    ],
)
def test_modes_are_octal_in_yaml(load: Load, text: str, mode: int) -> None:
    config = load(text)
    assert (config.umask if text.startswith("umask") else config.socket_mode) == mode


def test_modes_from_env_flags_and_keywords() -> None:
    assert load_config(None, {"SERVE_UMASK": "027"}, {}).umask == 0o27
    assert load_config(None, {}, {"socket_mode": "0o600"}).socket_mode == 0o600
    # Python callers pass a number, read as the number it is.
    assert load_config(None, {}, {"umask": 0o22}, cli_kind="keywords").umask == 0o22
    assert load_config(None, {"SERVE_UMASK": "null"}, {}).umask is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "umask: 089\n",
            "conf.yaml:1:8: umask: expected an octal mode from 0 to 0o777 like '0o022' or "
            "'022', or null, got '089'",
        ),
        (
            "socket_mode: 1777\n",
            "conf.yaml:1:14: socket_mode: expected an octal mode from 0 to 0o777 like '0o022' "
            "or '022', or null, got '1777'",
        ),
        (
            "umask: [1]\n",
            "conf.yaml:1:8: umask: expected an octal mode from 0 to 0o777 like '0o022' or "
            "'022', or null, got [1]",
        ),
        ("max_requests: -1\n", "conf.yaml:1:15: max_requests: expected an integer >= 0, got -1"),
        (
            "max_requests_jitter: lots\n",
            "conf.yaml:1:22: max_requests_jitter: expected an integer >= 0, got 'lots'",
        ),
        (
            "worker_timeout: 0\n",
            "conf.yaml:1:17: worker_timeout: expected a number of seconds > 0, got 0",
        ),
        (
            "health_interval: -1\n",
            "conf.yaml:1:18: health_interval: expected a number of seconds > 0, got -1",
        ),
        (
            "max_worker_memory: lots\n",
            "conf.yaml:1:20: max_worker_memory: expected a positive size in bytes like 65536, "
            "'64KiB' or '10MB', or null, got 'lots'",
        ),
        ('pidfile: ""\n', "conf.yaml:1:10: pidfile: expected a file path, or null, got ''"),
        ("log_file: 3\n", "conf.yaml:1:11: log_file: expected a string, or null, got 3"),
        (
            "user: -1\n",
            "conf.yaml:1:7: user: expected a name or a numeric id, or null, got -1",
        ),
        ("reuse_port: 1\n", "conf.yaml:1:13: reuse_port: expected true or false, got 1"),
        (
            "accept_balance: fair\n",
            "conf.yaml:1:17: accept_balance: expected one of 'reuseport', 'shared', got 'fair'",
        ),
        ("bind: fd://x\n", "conf.yaml:1:7: bind: expected a file descriptor number in 'fd://x'"),
        ("bind: [fd://3, fd://3]\n", "conf.yaml:1:16: bind[1]: duplicate address 'fd://3'"),
    ],
)
def test_new_key_errors_are_located(load: Load, text: str, expected: str) -> None:
    assert error_of(load, text) == expected


def test_reload_nested_mapping(load: Load) -> None:
    config = load(
        "reload:\n  enabled: true\n  dirs: [src, lib]\n  include: ['*.py', '*.html']\n"
        "  exclude: []\n"
    )
    assert config.reload == ReloadSpec(
        enabled=True, dirs=("src", "lib"), include=("*.py", "*.html"), exclude=()
    )


@pytest.mark.parametrize(
    ("text", "enabled"),
    [("reload: true\n", True), ("reload: false\n", False), ("reload:\n", False)],
)
def test_reload_shorthand(load: Load, text: str, enabled: bool) -> None:
    assert load(text).reload == ReloadSpec(enabled=enabled)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "reload:\n  enabeld: true\n",
            "conf.yaml:2:3: reload.enabeld: unknown key (did you mean 'enabled'?)",
        ),
        ("reload:\n  watch: [a]\n", "conf.yaml:2:3: reload.watch: unknown key"),
        (
            "reload:\n  enabled: yes please\n",
            "conf.yaml:2:12: reload.enabled: expected true or false, got 'yes please'",
        ),
        (
            "reload:\n  dirs: []\n",
            "conf.yaml:2:9: reload.dirs: needs at least one directory",
        ),
        (
            "reload:\n  dirs:\n    - src\n    - 3\n",
            "conf.yaml:4:7: reload.dirs[1]: expected a non-empty string, got 3",
        ),
        (
            "reload:\n  include: []\n",
            "conf.yaml:2:12: reload.include: needs at least one pattern",
        ),
        (
            "reload:\n  dirs: [a]\n  dirs: [b]\n",
            "conf.yaml:3:3: reload.dirs: duplicate key (first set at line 2)",
        ),
        (
            "reload: [src]\n",
            "conf.yaml:1:9: reload: expected a mapping of enabled, dirs, include, exclude, "
            "or true/false, got ['src']",
        ),
        ("relaod: true\n", "conf.yaml:1:1: relaod: unknown key (did you mean 'reload'?)"),
    ],
)
def test_reload_errors_are_located(load: Load, text: str, expected: str) -> None:
    assert error_of(load, text) == expected


def test_reload_layers_key_by_key(load: Load) -> None:
    text = "reload:\n  dirs: [src]\n  include: ['*.py']\n"
    # --reload turns it on and keeps the file's dirs.
    assert load(text, cli={"reload": True}).reload == ReloadSpec(enabled=True, dirs=("src",))
    config = load(text, env={"SERVE_RELOAD": "1", "SERVE_RELOAD_INCLUDE": "*.py,*.txt"})
    assert config.reload == ReloadSpec(enabled=True, dirs=("src",), include=("*.py", "*.txt"))
    config = load(text, cli={"reload.dirs": ["a", "b"]})
    assert config.reload == ReloadSpec(enabled=False, dirs=("a", "b"))


def test_reload_flag_and_env_errors_name_their_source() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"reload.dirs": [""]})
    assert str(info.value) == "--reload-dir: expected a non-empty string, got ''"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SERVE_RELOAD": "sometimes"}, {})
    assert str(info.value) == "SERVE_RELOAD: expected true or false, got 'sometimes'"


def test_reload_keywords() -> None:
    def kw(value: object) -> ReloadSpec:
        return load_config(None, {}, {"reload": value}, cli_kind="keywords").reload

    assert kw(True) == ReloadSpec(enabled=True)
    assert kw({"enabled": True, "dirs": ["src"]}) == ReloadSpec(enabled=True, dirs=("src",))
    spec = ReloadSpec(enabled=True, exclude=("*.tmp",))
    assert kw(spec) == spec
    with pytest.raises(ConfigError) as info:
        kw({"dir": ["src"]})
    assert str(info.value) == "reload.dir: unknown setting (did you mean 'dirs'?)"
    with pytest.raises(ConfigError) as info:
        kw("yes")
    assert str(info.value) == (
        "reload: expected a mapping of enabled, dirs, include, exclude, or true/false, got 'yes'"
    )


def test_config_as_yaml_round_trips_new_keys(load: Load) -> None:
    config = Config(
        app="pkg:app",
        umask=0o27,
        socket_mode=0o660,
        reload=ReloadSpec(enabled=True, dirs=("src",), exclude=()),
        max_worker_memory=1000,
        pidfile="/run/x.pid",
        bind=("fd://3",),
    )
    text = config_as_yaml(config)
    assert "umask: 0o027\n" in text
    assert "reload:\n  enabled: true\n" in text
    assert load(text) == config


@pytest.mark.parametrize("text", ["", "0o", "8", "0x1f", "-1"])
def test_parse_octal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_octal(text)
