"""The `serve` command: `serve [APP] [options]` runs, `serve check` validates, and
`serve reload|stop|status` control a running master found through its pidfile.

Rules:
- This is the only module of the project that calls sys.exit; exit codes follow
  server.exitcodes (2 for a config error, whatever run_master returns otherwise). Control
  commands exit 0 when done, 1 when no master runs (or it did not stop in time), 2 on a
  config error, like `nginx -s` and init scripts' `status`.
- The first word picks a subcommand; anything else is the run form, so an APP never
  collides with a subcommand that does not exist yet.
- Control commands read the same layers as the run form (-c FILE, SERVE_*, flags) to find
  the pidfile, and signal the pid written there; the status table comes from the status
  file the master writes next to its pidfile.
- Flags record only what the user passed (argparse.SUPPRESS defaults), so the YAML and
  SERVE_* layers underneath survive. Flag values go to the loader as text, so a bad flag and
  a bad YAML value are checked by the same code and reported the same way.
- The arbiter is imported only by the run form: `serve check` needs none of it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

from server import exitcodes
from supervisor import __version__
from supervisor.config_loader import ConfigError, config_as_yaml, load_config
from supervisor.config_schema import Config, ReloadSpec
from supervisor.pidfile import PidfileError, process_exists, read_pid
from supervisor.status import StatusError, format_status, read_status, status_path

_USAGE = (
    "serve [APP] [options]\n"
    "       serve check [APP] [-c FILE] [options]\n"
    "       serve reload|stop|status [-c FILE] [--pidfile FILE]"
)
_DESCRIPTION = "Run an ASGI app under a supervisor of forked worker processes."
_EPILOG = (
    "subcommands:\n"
    "  check    validate the config, print it as YAML and exit (2 on a config error)\n"
    "  reload   send HUP to the running master: reload the config, roll the workers\n"
    "  stop     send TERM to the running master and wait until it has exited\n"
    "  status   list the master and its workers: pid, generation, state, age, RSS\n"
    "The control commands find the master through `pidfile` and exit 1 when none runs.\n\n"
    "Settings are layered: defaults < config file < SERVE_<KEY> environment < flags."
)
# Exit code of a control command that found no running master.
NOT_RUNNING = 1
# How much longer than shutdown_delay + graceful_timeout `serve stop` waits: the master's own
# final steps.
_STOP_MARGIN_S = 10.0


class _NotRunning(Exception):
    """No master to control; str() is the message."""


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
    docs = {f.name: str(f.metadata["doc"]) for f in dataclasses.fields(Config)}
    return docs[key].replace("%", "%%")


def _reload_doc(key: str) -> str:
    docs = {f.name: str(f.metadata["doc"]) for f in dataclasses.fields(ReloadSpec)}
    return docs[key].replace("%", "%%")


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
    parser.add_argument("--preload", action="store_true", help=_doc("preload"))
    parser.add_argument("--reload", action="store_true", help=_reload_doc("enabled"))
    parser.add_argument(
        "--reload-dir",
        dest="reload.dirs",
        action="append",
        metavar="DIR",
        help=_reload_doc("dirs") + "; repeatable, replaces reload.dirs",
    )
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _loader(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[Callable[[], Config], str | None]:
    """A function that loads the config from the file and flags of `argv`, and the file.

    The master calls it again on SIGHUP: the file is read afresh, the flags stay on top.
    """
    values = vars(parser.parse_args(argv))
    path = values.pop("config", None)

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
    source = path if path is not None else "no config file"
    print(f"# effective config ({source}, SERVE_* environment and flags applied)")
    print(config_as_yaml(config), end="")
    return exitcodes.OK


def _run(argv: list[str]) -> int:
    load, _ = _loader(_parser("serve", _DESCRIPTION), argv)
    config = load()
    from supervisor.arbiter import run_master

    return run_master(config, reload_config=load)


def _control_target(name: str, argv: list[str]) -> tuple[Config, str, int]:
    """The config, pidfile and live master pid a control command acts on."""
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
    try:
        pid = read_pid(config.pidfile)
    except PidfileError as exc:
        raise _NotRunning(f"serve is not running: {exc}") from None
    if not process_exists(pid):
        raise _NotRunning(
            f"serve is not running: pidfile {config.pidfile} names process {pid}, which is gone"
        )
    return config, config.pidfile, pid


def _signal_master(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise _NotRunning(f"serve is not running: process {pid} is gone") from None


def _reload(argv: list[str]) -> int:
    _, _, pid = _control_target("reload", argv)
    _signal_master(pid, signal.SIGHUP)
    print(f"sent HUP to serve master {pid}: reloading")
    return exitcodes.OK


def _stop(argv: list[str]) -> int:
    config, _, pid = _control_target("stop", argv)
    timeout = config.graceful_timeout + config.shutdown_delay + _STOP_MARGIN_S
    with _exit_watch(pid) as exited:
        _signal_master(pid, signal.SIGTERM)
        if not exited(timeout):
            print(f"serve: error: master {pid} did not stop within {timeout:g} s", file=sys.stderr)
            return NOT_RUNNING
    print(f"serve master {pid} stopped")
    return exitcodes.OK


@contextlib.contextmanager
def _exit_watch(pid: int) -> Iterator[Callable[[float], bool]]:
    """Yield wait(timeout) -> True once `pid` exited. A pidfd (Linux 5.3+), opened before
    the signal is sent, cannot be fooled by pid reuse and sees a zombie as exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None

    def wait(timeout: float) -> bool:
        if pidfd is not None:
            return bool(select.select([pidfd], [], [], timeout)[0])
        deadline = time.monotonic() + timeout
        while process_exists(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    try:
        yield wait
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _status(argv: list[str]) -> int:
    _, pidfile, pid = _control_target("status", argv)
    try:
        snapshot = read_status(status_path(pidfile))
    except StatusError as exc:
        print(f"serve master {pid} is running; no worker status yet ({exc})")
        return exitcodes.OK
    if snapshot.get("master_pid") != pid:
        print(
            f"serve: warning: status file is from master {snapshot.get('master_pid')}, "
            f"not from the running master {pid}",
            file=sys.stderr,
        )
    print(format_status(snapshot), end="")
    return exitcodes.OK


_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "check": _check,
    "reload": _reload,
    "stop": _stop,
    "status": _status,
}


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
    except _NotRunning as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        code = NOT_RUNNING
    sys.exit(code)
