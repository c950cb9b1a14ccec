"""The `serve` command: `serve [APP] [options]` runs, `serve check [options]` validates.

Rules:
- This is the only module of the project that calls sys.exit; exit codes follow
  server.exitcodes (2 for a config error, whatever run_master returns otherwise).
- The first word picks a subcommand ("check"); anything else is the run form, so an APP
  never collides with a subcommand that does not exist yet.
- Flags record only what the user passed (argparse.SUPPRESS defaults), so the YAML and
  SERVE_* layers underneath survive. Flag values go to the loader as text, so a bad flag and
  a bad YAML value are checked by the same code and reported the same way.
- The arbiter is imported only by the run form: `serve check` needs none of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from collections.abc import Callable
from typing import NoReturn

from server import exitcodes
from supervisor import __version__
from supervisor.config_loader import ConfigError, config_as_yaml, load_config
from supervisor.config_schema import Config

_USAGE = "serve [APP] [options]\n       serve check [APP] [-c FILE] [options]"
_DESCRIPTION = "Run an ASGI app under a supervisor of forked worker processes."
_EPILOG = (
    "subcommands:\n"
    "  check    validate the config, print it as YAML and exit (2 on a config error)\n\n"
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
)


def _doc(key: str) -> str:
    docs = {f.name: str(f.metadata["doc"]) for f in dataclasses.fields(Config)}
    return docs[key].replace("%", "%%")


def _version() -> str:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"serve {__version__} with {python} on {platform.system()}"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=_USAGE,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("app", nargs="?", metavar="APP", help=_doc("app"))
    parser.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--bind", action="append", metavar="ADDRESS", help=_doc("bind") + "; repeatable"
    )
    for key, metavar in _VALUE_FLAGS:
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, dest=key, metavar=metavar, help=_doc(key))
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, help=_doc("access_log")
    )
    parser.add_argument("--factory", action="store_true", help=_doc("factory"))
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _load(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[Config, str | None]:
    values = vars(parser.parse_args(argv))
    path = values.pop("config", None)
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
    return config, path


def _check(argv: list[str]) -> int:
    parser = _parser("serve check", "Validate the config and print the effective settings.")
    config, path = _load(parser, argv)
    source = path if path is not None else "no config file"
    print(f"# effective config ({source}, SERVE_* environment and flags applied)")
    print(config_as_yaml(config), end="")
    return exitcodes.OK


def _run(argv: list[str]) -> int:
    config, _ = _load(_parser("serve", _DESCRIPTION), argv)
    from supervisor.arbiter import run_master

    return run_master(config)


_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {"check": _check}


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of `serve` and `python -m supervisor`; always exits."""
    args = sys.argv[1:] if argv is None else argv
    command: Callable[[list[str]], int] = _run
    rest = args
    if args and args[0] in _SUBCOMMANDS:
        command, rest = _SUBCOMMANDS[args[0]], args[1:]
    try:
        code = command(rest)
    except ConfigError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        code = exitcodes.CONFIG_ERROR
    sys.exit(code)
