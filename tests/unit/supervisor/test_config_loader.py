"""The config loader: layering, typing and located error messages (golden strings)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import supervisor
from server.types import Receive, Scope, Send
from supervisor.config_bind import BindSpec, parse_bind
from supervisor.config_loader import ConfigError, config_as_yaml, load_config
from supervisor.config_schema import Config
from supervisor.config_values import parse_size
from tests.unit.supervisor.config_text import Load, error_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workers: 4\n  bind: x\n",
            "conf.yaml:2:7: invalid YAML: mapping values are not allowed here",
        ),
        (
            'app: "x\n',
            "conf.yaml:2:1: invalid YAML: while scanning a quoted scalar started at 1:6; "
            "found unexpected end of stream",
        ),
        (
            "workers: 1\n---\nworkers: 2\n",
            "conf.yaml:2:1: invalid YAML: expected a single document in the stream; "
            "but found another document",
        ),
        (
            "- workers: 2\n",
            "conf.yaml:1:1: top level must be a mapping of keys to values, got a list",
        ),
        (
            "just text\n",
            "conf.yaml:1:1: top level must be a mapping of keys to values, got a single value",
        ),
        (
            "workers: 2\nwokers: 3\n",
            "conf.yaml:2:1: wokers: unknown key (did you mean 'workers'?)",
        ),
        ("zzz: 1\n", "conf.yaml:1:1: zzz: unknown key"),
        (
            "workers: 2\nlog_level: info\nworkers: 3\n",
            "conf.yaml:3:1: workers: duplicate key (first set at line 1)",
        ),
        ("workers: four\n", "conf.yaml:1:10: workers: expected a positive integer, got 'four'"),
        ("workers: true\n", "conf.yaml:1:10: workers: expected a positive integer, got true"),
        ("workers: 0\n", "conf.yaml:1:10: workers: expected a positive integer, got 0"),
        ('workers: "4"\n', "conf.yaml:1:10: workers: expected a positive integer, got '4'"),
        (
            "backlog: 2.5\n",
            "conf.yaml:1:10: backlog: expected a positive integer, got 2.5",
        ),
        (
            "limit_concurrency: many\n",
            "conf.yaml:1:20: limit_concurrency: expected a positive integer, or null, got 'many'",
        ),
        ("access_log: 1\n", "conf.yaml:1:13: access_log: expected true or false, got 1"),
        (
            "log_level: verbose\n",
            "conf.yaml:1:12: log_level: expected one of 'critical', 'error', 'warning', "
            "'info', 'debug', got 'verbose'",
        ),
        (
            "header_timeout: 0\n",
            "conf.yaml:1:17: header_timeout: expected a number of seconds > 0, got 0",
        ),
        (
            "graceful_timeout: -1\n",
            "conf.yaml:1:19: graceful_timeout: expected a number of seconds >= 0, got -1",
        ),
        ("root_path: 12\n", "conf.yaml:1:12: root_path: expected a string, got 12"),
        (
            'bind: "localhost"\n',
            "conf.yaml:1:7: bind: expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N, got "
            "'localhost'",
        ),
        (
            'bind: "1.2.3.4:99999"\n',
            "conf.yaml:1:7: bind: port 99999 out of range 0-65535 in '1.2.3.4:99999'",
        ),
        (
            "bind:\n  - 127.0.0.1:8000\n  - ::1:8000\n",
            "conf.yaml:3:5: bind[1]: IPv6 addresses need brackets, like '[::1]:8000', "
            "got '::1:8000'",
        ),
        (
            'bind: "http://127.0.0.1:8000/"\n',
            "conf.yaml:1:7: bind: a bind takes no scheme: write '127.0.0.1:8000', not "
            "'http://127.0.0.1:8000/'",
        ),
        (
            "bind:\n  - 127.0.0.1:8000\n  - 127.0.0.1:8000\n",
            "conf.yaml:3:5: bind[1]: duplicate address '127.0.0.1:8000'",
        ),
        ("bind: []\n", "conf.yaml:1:7: bind: needs at least one address"),
        (
            "bind: 300.1.1.1:80\n",
            "conf.yaml:1:7: bind: invalid IPv4 address '300.1.1.1' in '300.1.1.1:80'",
        ),
        (
            "max_body_size: 10 parsecs\n",
            "conf.yaml:1:16: max_body_size: expected a positive size in bytes like 65536, "
            "'64KiB' or '10MB', or null, got '10 parsecs'",
        ),
        (
            "max_header_size: 0KiB\n",
            "conf.yaml:1:18: max_header_size: expected a positive size in bytes like 65536, "
            "'64KiB' or '10MB', got '0KiB'",
        ),
        (
            "forwarded_allow_ips: 10.0.0.0/8, 10.0.0.1/8\n",
            "conf.yaml:1:22: forwarded_allow_ips: expected an IP address, a CIDR or '*': "
            "10.0.0.1/8 has host bits set",
        ),
        (
            "app: main\n",
            "conf.yaml:1:6: app: expected 'module:attr' like 'myapp.main:app', got 'main'",
        ),
        (
            'access_log_format: "%(client)s %(agent)s"\n',
            "conf.yaml:1:20: access_log_format: unknown field 'agent' (known: client, "
            "request_line, status, bytes, duration_ms, method, path)",
        ),
        (
            'access_log_format: "%s"\n',
            "conf.yaml:1:20: access_log_format: use named fields like %(status)s, "
            "not positional %s",
        ),
        (
            'access_log_format: "%(status)q"\n',
            "conf.yaml:1:20: access_log_format: not a valid %-format: unsupported format "
            "character 'q' (0x71) at index 9",
        ),
        (
            'server_header: "serve\\r\\nX-Evil: 1"\n',
            "conf.yaml:1:16: server_header: control characters are not allowed in a header "
            "value, got 'serve\\r\\nX-Evil: 1'",
        ),
        (
            'workers: !!python/name:os.system ""\n',
            "conf.yaml:1:10: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/name:os.system'",
        ),
    ],
)
def test_yaml_errors_are_located(load: Load, text: str, expected: str) -> None:
    assert error_of(load, text) == expected


def test_error_keeps_its_parts(load: Load) -> None:
    with pytest.raises(ConfigError) as info:
        load("# comment\n\nworkers: four\n")
    error = info.value
    assert (error.file, error.line, error.col, error.key_path) == ("conf.yaml", 3, 10, "workers")
    assert error.message == "expected a positive integer, got 'four'"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("nope.yaml", {}, {})
    assert str(info.value) == "nope.yaml: cannot read: No such file or directory"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(load: Load, text: str) -> None:
    assert load(text) == Config()


def test_no_file_means_defaults() -> None:
    assert load_config(None, {}, {}) == Config()


def test_yaml_values_are_typed(load: Load) -> None:
    config = load(
        "app: pkg.mod:factory.make\nworkers: 3\nbind: unix:/tmp/serve.sock\n"
        "graceful_timeout: 2\nlifespan: off\nlimit_concurrency: null\nserver_header: null\n"
        "forwarded_allow_ips: ['10.0.0.0/8', '*']\nlog_level: DEBUG\n"
    )
    assert config.app == "pkg.mod:factory.make"
    assert config.workers == 3
    assert config.bind == ("unix:/tmp/serve.sock",)
    assert config.graceful_timeout == 2.0
    assert isinstance(config.graceful_timeout, float)
    # YAML 1.1 reads a bare `off` as false; lifespan takes it as "off".
    assert config.lifespan == "off"
    assert config.limit_concurrency is None
    assert config.server_header is None
    assert config.forwarded_allow_ips == ("10.0.0.0/8", "*")
    assert config.log_level == "debug"


def test_forwarded_allow_ips_comma_string(load: Load) -> None:
    config = load('forwarded_allow_ips: "10.0.0.0/8, 192.168.1.7,::1"\n')
    assert config.forwarded_allow_ips == ("10.0.0.0/8", "192.168.1.7", "::1")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("64KiB", 65536),
        ("64kib", 65536),
        ("10MB", 10_000_000),
        ("1GiB", 1024**3),
        ("1.5KB", 1500),
        ("2 MiB", 2 * 1024**2),
        ("7B", 7),
    ],
)
def test_sizes_with_units(load: Load, text: str, size: int) -> None:
    assert parse_size(text) == size
    config = load(f"max_body_size: {text}\nmax_header_size: {text}\n")
    assert (config.max_body_size, config.max_header_size) == (size, size)


def test_layers_file_then_env_then_cli(load: Load) -> None:
    text = "app: a:app\nworkers: 2\nlog_level: debug\naccess_log: true\n"
    env = {"SERVE_WORKERS": "4", "SERVE_ACCESS_LOG": "false"}
    config = load(text, env=env)
    assert (config.workers, config.access_log, config.log_level) == (4, False, "debug")
    config = load(text, env=env, cli={"workers": "6", "app": "b:app"})
    assert (config.workers, config.app, config.access_log) == (6, "b:app", False)


def test_env_values_are_text(load: Load) -> None:
    env = {
        "SERVE_BIND": "127.0.0.1:8000, unix:/tmp/s.sock",
        "SERVE_GRACEFUL_TIMEOUT": " 2.5 ",
        "SERVE_LIFESPAN": "on",
        "SERVE_LIMIT_CONCURRENCY": "null",
        "SERVE_SERVER_HEADER": "",
        "SERVE_MAX_BODY_SIZE": "1MiB",
    }
    config = load("limit_concurrency: 10\n", env=env)
    assert config.bind == ("127.0.0.1:8000", "unix:/tmp/s.sock")
    assert config.graceful_timeout == 2.5
    assert config.lifespan == "on"
    assert config.limit_concurrency is None
    assert config.server_header is None
    assert config.max_body_size == 1024**2


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in ("true", "1", "yes", "on", "TRUE")]
    + [(w, False) for w in ("false", "0", "no", "off", "Off")],
)
def test_env_booleans(word: str, value: bool) -> None:
    assert load_config(None, {"SERVE_PROXY_HEADERS": word}, {}).proxy_headers is value


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SERVE_ACCESS_LOG": "maybe"}, {})
    assert str(info.value) == "SERVE_ACCESS_LOG: expected true or false, got 'maybe'"


def test_env_near_misses_are_ignored() -> None:
    # The environment is shared with other tools: only SERVE_<KEY> names are read.
    env = {"SERVE_WOKERS": "3", "SERVE_CONFIG": "x.yaml", "SERVE_WORKERS_EXTRA": "x"}
    assert load_config(None, env, {}) == Config()


def test_cli_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"keep_alive_timeout": "soon"})
    assert str(info.value) == "--keep-alive-timeout: expected a number of seconds >= 0, got 'soon'"
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"app": "nocolon"})
    assert str(info.value) == "APP: expected 'module:attr' like 'myapp.main:app', got 'nocolon'"


def test_cli_takes_typed_values() -> None:
    config = load_config(None, {}, {"bind": ["127.0.0.1:0", "[::1]:0"], "access_log": False})
    assert config.bind == ("127.0.0.1:0", "[::1]:0")
    assert config.access_log is False


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never called by the loader")


def test_keywords_accept_an_app_object_and_reject_unknown_names() -> None:
    config = load_config(None, {}, {"app": _asgi_app, "workers": 2}, cli_kind="keywords")
    assert config.app is _asgi_app
    assert config.workers == 2
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"wokers": 2}, cli_kind="keywords")
    assert str(info.value) == "wokers: unknown setting (did you mean 'workers'?)"
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"workers": "2"}, cli_kind="keywords")
    assert str(info.value) == "workers: expected a positive integer, got '2'"


def test_app_object_only_from_keywords() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"app": _asgi_app})
    assert str(info.value).startswith("APP: expected a string, or null, got <function _asgi_app")


def test_run_validates_before_starting_anything() -> None:
    with pytest.raises(ConfigError) as info:
        supervisor.run(_asgi_app, wokers=2)
    assert str(info.value) == "wokers: unknown setting (did you mean 'workers'?)"
    # host and port become the bind address, checked like any other.
    with pytest.raises(ConfigError) as info:
        supervisor.run("pkg:app", host="::1", port=99999)
    assert str(info.value) == "bind: port 99999 out of range 0-65535 in '[::1]:99999'"


def test_error_survives_pickling() -> None:
    error = ConfigError("a.yaml", 1, 2, "workers", "bad")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.key_path) == ("a.yaml:1:2: workers: bad", "workers")


def test_config_as_yaml_loads_back(load: Load) -> None:
    config = Config(
        app="pkg:app",
        bind=("0.0.0.0:80", "unix:/run/s.sock"),
        workers=3,
        lifespan="off",
        server_header=None,
        max_body_size=None,
        forwarded_allow_ips=("*",),
    )
    text = config_as_yaml(config)
    assert "workers: 3\n" in text
    assert load(text) == config


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("127.0.0.1:8000", BindSpec("tcp", host="127.0.0.1", port=8000)),
        ("0.0.0.0:0", BindSpec("tcp", host="0.0.0.0", port=0)),
        ("localhost:80", BindSpec("tcp", host="localhost", port=80)),
        ("api.example.com.:443", BindSpec("tcp", host="api.example.com.", port=443)),
        ("[::1]:8000", BindSpec("tcp", host="::1", port=8000)),
        ("[0:0::1]:9", BindSpec("tcp", host="::1", port=9)),
        ("unix:/tmp/a b.sock", BindSpec("unix", path="/tmp/a b.sock")),
    ],
)
def test_parse_bind(value: str, spec: BindSpec) -> None:
    assert parse_bind(value) == spec
    assert parse_bind(str(spec)) == spec


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("8000", "expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N, got '8000'"),
        (":8000", "missing host in ':8000' (0.0.0.0 listens on every interface)"),
        ("localhost:http", "invalid port 'http' in 'localhost:http'"),
        ("localhost:-1", "invalid port '-1' in 'localhost:-1'"),
        ("bad_host:80", "invalid host name 'bad_host' in 'bad_host:80'"),
        ("[::g]:80", "invalid IPv6 address '[::g]' in '[::g]:80'"),
        ("unix:", "empty socket path in 'unix:'"),
    ],
)
def test_parse_bind_rejects(value: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bind(value)
    assert str(info.value) == reason
