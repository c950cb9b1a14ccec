"""Build a Config from defaults, a YAML file, SERVE_* environment and command-line values.

Rules:
- This is the only module that reads YAML. Layers, lowest first: Config defaults < YAML file <
  SERVE_<KEY> environment < command-line flags (or the keywords of serve.run()).
- Every bad value becomes one ConfigError naming where it came from: file:line:col of the
  YAML node (PyYAML start_mark, 1-based here), the variable name for the environment, the
  flag for the command line. Nothing here exits the process, logs or imports the app.
- What makes a value valid is config_values.py's business; YAML values and run() keywords
  must have the right type, environment values and string flags are text to be parsed.
- Only SERVE_ variables named after a key are read; anything else under SERVE_ is ignored,
  even a near miss, because the environment is shared with other tools and a typo there is
  not ours to reject. Unknown YAML keys and unknown keywords are errors with a did-you-mean.
- A nested mapping (`reload:`, `ssl:`) is layered key by key: each layer sets the sub-keys
  it names (`reload.dirs`, SERVE_RELOAD_DIRS, --reload-dir), so `--reload` keeps the file's
  dirs. `reload: true` (SERVE_RELOAD, --reload, run(reload=True)) is short for
  `reload.enabled`; a mapping without an `enabled` key has no such shorthand.
- The `ssl` files are loaded once the whole config is built, by the code the workers use
  (server.tls), so a missing file, a key that does not match, a wrong password fail here,
  located at the sub-key to blame. Each call reads them afresh: a SIGHUP sees a rotated
  certificate, and a broken one fails the reload before a new generation starts. The other
  `ssl` sub-keys need `ssl.certfile`.
- The `log_config` file is read here too (as YAML, which covers JSON), so `serve check`
  and a reload find a broken one; read_log_config() also gives the mapping to the master
  (supervisor.logsetup) and to each generation's workers (supervisor.resources).
- A YAML scalar for a mode key (umask, socket_mode) is read as its text, so `umask: 022`
  and `umask: 22` are both octal, as the umask command reads them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from serve.server.tls import TLSConfigError, build_context
from serve.supervisor.config_checks import BadValueError
from serve.supervisor.config_schema import LEAF_KEYS, NESTED, Config, SSLSpec
from serve.supervisor.config_values import OCTAL_KEYS, RawValue, convert

if TYPE_CHECKING:
    import yaml
    from yaml.nodes import MappingNode, Node

# PyYAML is imported by the functions that read or write YAML, not at import: `serve APP`
# without a config file starts its first worker sooner without it.

FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Config))
# How config_as_yaml shows a secret (a field kept out of the dataclass repr) that is set.
HIDDEN = "********"
# Flags whose name is not "--" + the key with dashes.
_FLAG_NAMES = {"reload.enabled": "--reload", "reload.dirs": "--reload-dir"}


@dataclasses.dataclass(eq=False)
class ConfigError(Exception):
    """A bad config value, located: `prod.yaml:12:10: workers: expected ..., got 'four'`.

    file, line and col (1-based) are None when unknown; key_path names the key as the user
    wrote it (`bind[1]`, `SERVE_WORKERS`, `--workers`).
    """

    file: str | None
    line: int | None
    col: int | None
    key_path: str | None
    message: str

    def __post_init__(self) -> None:
        # Exception.args feeds pickling and the default repr of tracebacks.
        self.args = (self.file, self.line, self.col, self.key_path, self.message)

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line, self.col) if part is not None)
        return ": ".join(part for part in (where, self.key_path, self.message) if part)


@dataclasses.dataclass(frozen=True, slots=True)
class _Source:
    """Where a raw value came from; a YAML sequence keeps one source per item."""

    key_path: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    items: tuple[_Source, ...] = ()

    def error(self, message: str, index: int | None = None) -> ConfigError:
        if index is not None and index < len(self.items):
            return self.items[index].error(message)
        return ConfigError(self.file, self.line, self.col, self.key_path, message)


# Each layer maps a key to its raw value and where that value came from.
_Layer = dict[str, tuple[RawValue, _Source]]


def _unknown(kind: str, key: str, known: tuple[str, ...] = FIELD_NAMES) -> str:
    import difflib  # only for an error

    matches = difflib.get_close_matches(key, known, n=1)
    return f"unknown {kind} (did you mean {matches[0]!r}?)" if matches else f"unknown {kind}"


def _sub_keys(key: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(NESTED[key]))


def _has_switch(key: str) -> bool:
    """Whether `key: true/false` is short for `key.enabled`."""
    return "enabled" in _sub_keys(key)


def _nested_shape(key: str) -> str:
    shape = f"a mapping of {', '.join(_sub_keys(key))}"
    return shape + ", or true/false" if _has_switch(key) else shape


def _node_source(file: str, key_path: str, node: Node) -> _Source:
    from yaml.nodes import SequenceNode

    items: tuple[_Source, ...] = ()
    if isinstance(node, SequenceNode):
        items = tuple(
            _node_source(file, f"{key_path}[{index}]", item)
            for index, item in enumerate(node.value)
        )
    mark = node.start_mark
    return _Source(key_path, file, mark.line + 1, mark.column + 1, items)


def _mapping_values(
    file: str, loader: yaml.SafeLoader, root: MappingNode, prefix: str = ""
) -> _Layer:
    """The values of one YAML mapping: the top level, or a nested key's when `prefix` is set."""
    from yaml.nodes import ScalarNode

    known = _sub_keys(prefix.rstrip(".")) if prefix else FIELD_NAMES
    raws: _Layer = {}
    first_line: dict[str, int] = {}
    for key_node, value_node in root.value:
        if not isinstance(key_node, ScalarNode):
            raise _node_source(file, prefix.rstrip("."), key_node).error("keys must be plain names")
        key = str(key_node.value)
        here = _node_source(file, prefix + key, key_node)
        if key in first_line:
            raise here.error(f"duplicate key (first set at line {first_line[key]})")
        if key not in known:
            raise here.error(_unknown("key", key, known))
        first_line[key] = typing.cast(int, here.line)
        if key in NESTED and not prefix:
            raws.update(_nested_values(file, loader, key, value_node))
        elif key in OCTAL_KEYS and isinstance(value_node, ScalarNode):
            raws[key] = (RawValue(value_node.value, text=True), _node_source(file, key, value_node))
        else:
            value = loader.construct_object(value_node, deep=True)
            raws[prefix + key] = (RawValue(value), _node_source(file, prefix + key, value_node))
    return raws


def _nested_values(file: str, loader: yaml.SafeLoader, key: str, node: Node) -> _Layer:
    from yaml.nodes import MappingNode

    if isinstance(node, MappingNode):
        return _mapping_values(file, loader, node, prefix=key + ".")
    value = loader.construct_object(node, deep=True)
    source = _node_source(file, key, node)
    if isinstance(value, bool) and _has_switch(key):
        return {f"{key}.enabled": (RawValue(value), source)}
    if value is None:
        return {}
    raise source.error(f"expected {_nested_shape(key)}, got {value!r}")


def _syntax_error(file: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    context, start = exc.context, exc.context_mark
    if context and context.startswith("while ") and start is not None:
        # The problem is often found far from its cause (an unclosed quote at end of file).
        context = f"{context} started at {start.line + 1}:{start.column + 1}"
    reason = "; ".join(part for part in (context, exc.problem) if part)
    mark = exc.problem_mark or start
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return ConfigError(file, line, col, None, f"invalid YAML: {reason}")


def _read_yaml(file: str) -> _Layer:
    import yaml
    from yaml.nodes import MappingNode, SequenceNode

    try:
        with open(file, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise ConfigError(file, None, None, None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, None, None, None, "not UTF-8 text") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or root.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(root, MappingNode):
            found = "a list" if isinstance(root, SequenceNode) else "a single value"
            raise _node_source(file, "", root).error(
                f"top level must be a mapping of keys to values, got {found}"
            )
        return _mapping_values(file, loader, root)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(file, exc) from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, None, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _flatten_nested(values: Mapping[str, object]) -> dict[str, object]:
    """run(reload=True | {"dirs": [...]} | ReloadSpec(...)) -> dotted keys; flags are dotted."""
    flat: dict[str, object] = {}
    for key, value in values.items():
        if key not in NESTED:
            flat[key] = value
        elif isinstance(value, bool) and _has_switch(key):
            flat[f"{key}.enabled"] = value
        elif isinstance(value, NESTED[key]):
            flat.update({f"{key}.{sub}": getattr(value, sub) for sub in _sub_keys(key)})
        elif isinstance(value, Mapping):
            flat.update({f"{key}.{sub}": item for sub, item in value.items()})
        else:
            raise ConfigError(
                None, None, None, key, f"expected {_nested_shape(key)}, got {value!r}"
            )
    return flat


def _override_values(values: Mapping[str, object], from_keywords: bool) -> _Layer:
    raws: _Layer = {}
    for key, value in _flatten_nested(values).items():
        flag = "APP" if key == "app" else "--" + key.replace("_", "-").replace(".", "-")
        name = key if from_keywords else _FLAG_NAMES.get(key, flag)
        if key not in LEAF_KEYS:
            outer, dot, inner = key.partition(".")
            known = _sub_keys(outer) if dot and outer in NESTED else FIELD_NAMES
            raise ConfigError(None, None, None, name, _unknown("setting", inner or key, known))
        text = isinstance(value, str) and not from_keywords
        raws[key] = (RawValue(value, text=text, python=from_keywords), _Source(name))
    return raws


def _env_names() -> dict[str, str]:
    """Every SERVE_* variable the loader reads, with the key it sets."""
    names = {f"SERVE_{key.replace('.', '_').upper()}": key for key in LEAF_KEYS}
    names.update({f"SERVE_{key.upper()}": f"{key}.enabled" for key in NESTED if _has_switch(key)})
    return names


def _env_values(env: Mapping[str, str]) -> _Layer:
    raws: _Layer = {}
    for var, key in _env_names().items():
        if var in env:
            raws[key] = (RawValue(env[var], text=True), _Source(var))
    return raws


def unknown_env_warnings(env: Mapping[str, str], internal: tuple[str, ...] = ()) -> list[str]:
    """One line per SERVE_* variable in `env` that sets nothing (a misspelt key is ignored
    silently otherwise), with a did-you-mean; `internal` names variables serve sets itself."""
    known = tuple(_env_names())
    return [
        f"{var}: {_unknown('environment variable, ignored', var, known)}"
        for var in sorted(env)
        if var.startswith("SERVE_") and var not in known and var not in internal
    ]


def _build(values: Mapping[str, Any]) -> Config:
    flat = {key: value for key, value in values.items() if "." not in key}
    for outer, spec in NESTED.items():
        prefix = outer + "."
        subs = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        if subs:
            flat[outer] = spec(**subs)
    return Config(**flat)


def load_config(
    path: str | None,
    env: Mapping[str, str],
    cli: Mapping[str, object],
    *,
    cli_kind: Literal["flags", "keywords"] = "flags",
    load_files: bool = True,
) -> Config:
    """Layer defaults < YAML file `path` < SERVE_* `env` < `cli`; raise ConfigError.

    `cli` holds only the keys the user set, named like the Config fields. With the default
    cli_kind="flags" they are argparse values and errors name the flag (`--workers`, `APP`);
    with "keywords" they come from serve.serve.run() and may hold an app object.
    load_files=False skips loading the files the config names (ssl, log_config): control
    commands need only the pidfile, and an operator who may signal the master need not be
    able to read its private key.
    """
    raws = _read_yaml(path) if path is not None else {}
    raws.update(_env_values(env))
    raws.update(_override_values(cli, from_keywords=cli_kind == "keywords"))
    values: dict[str, Any] = {}
    for key, (raw, source) in raws.items():
        try:
            values[key] = convert(key, raw)
        except BadValueError as exc:
            raise source.error(exc.message, exc.index) from None
    config = _build(values)
    if load_files:
        _check_tls(config.ssl, raws)
        if config.log_config is not None:
            read_log_config(config.log_config)
    return config


def read_log_config(path: str) -> dict[str, Any]:
    """The logging.config.dictConfig mapping in the `log_config` file `path` (YAML or JSON);
    raise ConfigError located in that file. dictConfig itself judges the contents."""
    import yaml

    try:
        with open(path, encoding="utf-8") as stream:
            value = yaml.safe_load(stream)
    except OSError as exc:
        raise ConfigError(path, None, None, "log_config", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, None, "log_config", "not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        error = _syntax_error(path, exc)
        raise dataclasses.replace(error, key_path="log_config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, None, "log_config", f"invalid YAML: {exc}") from None
    if not isinstance(value, dict) or value.get("version") != 1:
        message = "expected a logging dictConfig mapping with `version: 1`"
        raise ConfigError(path, None, None, "log_config", message)
    return value


def _check_tls(spec: SSLSpec, raws: _Layer) -> None:
    """Load the ssl files as a worker will; blame the sub-key at fault where it was set."""

    def source(sub_key: str) -> _Source:
        key = f"ssl.{sub_key}"
        return raws[key][1] if key in raws else _Source(key)

    settings = spec.settings()
    if settings is None:
        for f in dataclasses.fields(SSLSpec):
            if getattr(spec, f.name) != f.default:
                raise source(f.name).error("needs ssl.certfile: TLS is off without a certificate")
        return
    try:
        build_context(settings)
    except TLSConfigError as exc:
        raise source(exc.key).error(exc.message) from None


def config_as_yaml(config: Config) -> str:
    """The config as YAML in field order, loadable again; an app object shows as its repr and
    a secret (ssl.password) as HIDDEN, since this output ends up in terminals and CI logs."""
    import yaml

    lines = []
    for f in dataclasses.fields(Config):
        value = _plain(getattr(config, f.name))
        if f.name in OCTAL_KEYS and value is not None:
            value = f"0o{value:03o}"
        dumped = yaml.safe_dump(
            {f.name: value}, default_flow_style=False, width=1000, sort_keys=False
        )
        lines.append(dumped.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        # A field kept out of the repr is a secret.
        hidden = {f.name: HIDDEN for f in dataclasses.fields(value) if not f.repr and plain[f.name]}
        return plain | hidden
    if callable(value):
        return repr(value)
    return value
