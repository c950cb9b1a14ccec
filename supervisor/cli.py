"""The `serve` command: `serve [APP] [options]` runs, `serve check` validates, and
`serve reload|stop|status` control a running master found through its pidfile.

Rules:
- This is the only module of the master that calls sys.exit; exit codes follow
  server.exitcodes (2 for a config error, whatever run_master returns otherwise). The
  helper programs the master runs end their own processes (watcher.py's file watcher,
  preflight.py's import check), and forked children leave through os._exit. Control
  commands (supervisor.control) exit 0 when done, 1 when no master runs or it did not do
  what was asked (a failed reload, a stop that timed out), 2 on a config error, like
  `nginx -s` and init scripts' `status`.
- The first word picks a subcommand; anything else is the run form, so an APP never
  collides with a subcommand that does not exist yet.
- Control commands read the same layers as the run form (-c FILE, SERVE_*, flags) to find
  the pidfile; supervisor.control does the rest.
- Flags record only what the user passed (argparse.SUPPRESS defaults), so the YAML and
  SERVE_* layers underneath survive. Flag values go to the loader as text, so a bad flag and
  a bad YAML value are checked by the same code and reported the same way.
- The arbiter is imported only by the run form: `serve check` needs none of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from serve.server import exitcodes
from serve.supervisor import __version__, control
from serve.supervisor.config_loader import (
    ConfigError,
    config_as_yaml,
    load_config,
    unknown_env_warnings,
)
from serve.supervisor.config_schema import Config, ReloadSpec
from serve.supervisor.preflight import PreflightError, preflight
from serve.supervisor.upgrade import INTERNAL_ENV

_USAGE = (
    "serve [APP] [options]\n"
    "       serve check [APP] [-c FILE] [options]\n"
    "       serve reload|stop|status [-c FILE] [--pidfile FILE]"
)
_DESCRIPTION = "Run an ASGI app under a supervisor of forked worker processes."
_EPILOG = (
    "subcommands:\n"
    "  check    validate the config, import the app (in a child process), apply log_config,\n"
    "           test the binds; print the config as YAML (exit 2 on a config error, 4 when\n"
    "           the app does not import)\n"
    "  reload   send HUP to the running master and wait until the new workers are ready\n"
    "           (exit 0) or the reload failed and the old ones serve on (exit 1)\n"
    "  stop     send TERM to the running master and wait until it has exited\n"
    "  status   list the master, its last reload and its workers: pid, generation, state,\n"
    "           age, RSS\n"
    "The control commands find the master through `pidfile` and exit 1 when none runs.\n\n"
    "Settings are layered: defaults < config file < SERVE_<KEY> environment < flags."
)


# Flags that take one value, with the metavar shown in --help; help text is the field doc.
_VALUE_FLAGS = (
    ("workers", "N"),
    ("log_level", "LEVEL"),
    ("log_format", "FORMAT"),
    ("graceful_timeout", "SECONDS"),
    ("keep_alive_timeout", "SECONDS"),
    ("header_timeout", "SECONDS"),
    ("root_path", "PATH"),
    ("forwarded_allow_ips", "IPS"),
    ("limit_concurrency", "N"),
    ("max_body_size", "SIZE"),
    ("lifespan", "MODE"),
    ("app_dir", "DIR"),
    ("server_header", "VALUE"),
    ("worker_timeout", "SECONDS"),
    ("max_requests", "N"),
    ("max_requests_jitter", "N"),
    ("max_worker_memory", "SIZE"),
    ("pidfile", "FILE"),
    ("log_file", "FILE"),
    ("log_config", "FILE"),
    ("shutdown_delay", "SECONDS"),
    ("send_timeout", "SECONDS"),
)


def _doc(key: str) -> str:
    return _field_doc(Config, key)


def _reload_doc(key: str) -> str:
    return _field_doc(ReloadSpec, key)


def _field_doc(spec: type[Any], key: str) -> str:
    """The field's doc and its default, escaped for argparse's % formatting."""
    field = {f.name: f for f in dataclasses.fields(spec)}[key]
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    text = str(field.metadata["doc"])
    # A switch's False and an empty value say nothing the doc does not.
    silent = default is None or default is False or default is dataclasses.MISSING
    if not silent and default not in ("", ()):
        shown = ", ".join(default) if isinstance(default, tuple) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def _with_host_port(values: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's --host/--port, turned into the bind they mean."""
    host, port = values.pop("host", None), values.pop("port", None)
    if host is None and port is None:
        return values
    if "bind" in values:
        raise ConfigError(
            None, None, None, "--host/--port", "give either --bind or --host/--port, not both"
        )
    host = host or "127.0.0.1"
    address = f"[{host}]" if ":" in host and not host.startswith("[") else host
    values["bind"] = [f"{address}:{port or 8000}"]
    return values


def _version() -> str:
    # From sys and os rather than the platform module, whose import every start would pay.
    python = f"Python {sys.version.split()[0]} ({sys.implementation.name})"
    return f"serve {__version__} with {python} on {os.uname().sysname}"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=_USAGE,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
        # `--header X` must not become --header-timeout, nor `--server` --server-header.
        allow_abbrev=False,
    )
    parser.add_argument("app", nargs="?", metavar="APP", help=_doc("app"))
    parser.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--bind", action="append", metavar="ADDRESS", help=_doc("bind") + "; repeatable"
    )
    parser.add_argument(
        "--host", metavar="HOST", help="sets bind to HOST:PORT, with --port (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", metavar="PORT", help="sets bind to HOST:PORT, with --host (default: 8000)"
    )
    for key, metavar in _VALUE_FLAGS:
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=key, metavar=metavar, help=_doc(key))
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, help=_doc("access_log")
    )
    parser.add_argument("--factory", action="store_true", help=_doc("factory"))
    parser.add_argument("--preload", action="store_true", help=_doc("preload"))
    parser.add_argument("--reload", action="store_true", help=_reload_doc("enabled"))
    parser.add_argument(
        "--reload-dir",
        dest="reload.dirs",
        action="append",
        metavar="DIR",
        help=_reload_doc("dirs") + "; repeatable, replaces reload.dirs",
    )
    parser.add_argument("-V", "--version", action="version", version=_version())
    return parser


def _loader(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[Callable[[], Config], str | None]:
    """A function that loads the config from the file and flags of `argv`, and the file.

    The master calls it again on SIGHUP: the file is read afresh, the flags stay on top.
    """
    values = _with_host_port(vars(parser.parse_args(argv)))
    path = values.pop("config", None)
    for warning in unknown_env_warnings(os.environ, INTERNAL_ENV):
        print(f"serve: warning: {warning}", file=sys.stderr)

    def load() -> Config:
        config = load_config(path, os.environ, values)
        if config.app is None:
            raise ConfigError(
                None,
                None,
                None,
                None,
                "no app to serve: pass APP (like 'serve myapp.main:app') or set 'app:' in the "
                "config file",
            )
        return config

    return load, path


def _check(argv: list[str]) -> int:
    parser = _parser("serve check", "Validate the config and print the effective settings.")
    load, path = _loader(parser, argv)
    config = load()
    preflight(config)
    source = path if path is not None else "no config file"
    print(f"# effective config ({source}, SERVE_* environment and flags applied)")
    print(config_as_yaml(config), end="")
    return exitcodes.OK


def _run(argv: list[str]) -> int:
    load, _ = _loader(_parser("serve", _DESCRIPTION), argv)
    config = load()
    from serve.supervisor.arbiter import run_master

    return run_master(config, reload_config=load)


def _control(name: str, command: Callable[[Config], int]) -> Callable[[list[str]], int]:
    """The subcommand `serve NAME`: load the config (without its files) and run `command`."""

    def run(argv: list[str]) -> int:
        parser = _parser(f"serve {name}", f"Control a running serve master ({name}).")
        values = vars(parser.parse_args(argv))
        config = load_config(values.pop("config", None), os.environ, values, load_files=False)
        if config.pidfile is None:
            raise ConfigError(
                None,
                None,
                None,
                "pidfile",
                f"not set: serve {name} finds the master through it; set 'pidfile:' in the "
                "config file (-c FILE) or pass --pidfile FILE",
            )
        return command(config)

    return run


_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "check": _check,
    "reload": _control("reload", control.reload_master),
    "stop": _control("stop", control.stop_master),
    "status": _control("status", control.show_status),
}


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of `serve` and `python -m serve.supervisor`; always exits."""
    args = sys.argv[1:] if argv is None else argv
    command: Callable[[list[str]], int] = _run
    rest = args
    if args and args[0] in _SUBCOMMANDS:
        command, rest = _SUBCOMMANDS[args[0]], args[1:]
    try:
        code = command(rest)
    except PreflightError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except ConfigError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        code = exitcodes.CONFIG_ERROR
    except control.NotRunning as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        code = control.NOT_RUNNING
    sys.exit(code)
