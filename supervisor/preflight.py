"""What `serve check` tries beyond validating the config, so that what passes check starts:
each bind it can test without taking the port, the log_config mapping, the app import.

Rules:
- Nothing here takes a listening port or keeps a socket: a TCP host is tested by binding
  port 0 on it (the address must be this machine's), a unix socket by its directory.
  A port in use is no error: check runs beside the live server before a reload.
- The app is imported, and log_config applied, in a child process (`python -m
  serve.supervisor.preflight SPEC`), never in `serve check` itself: importing runs the app's
  code, which may hang (the child is killed after boot_timeout), print, or configure
  logging. The child writes its verdict as the last line of its stdout and exits with the
  code a worker would: 0, CONFIG_ERROR for log_config, APP_LOAD_ERROR for the app.
- Errors are raised as ConfigError (key and one-line reason) with the exit code to use.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from serve.server import exitcodes
from serve.supervisor.config_bind import parse_bind
from serve.supervisor.config_loader import ConfigError
from serve.supervisor.config_schema import Config

_PACKAGE_ROOT = str(Path(__file__).absolute().parents[2])
_VERDICT = "serve-check: "


class PreflightError(ConfigError):
    """A check failed; `exit_code` is what `serve check` exits with."""

    exit_code: int = exitcodes.CONFIG_ERROR


class _AppError(PreflightError):
    exit_code = exitcodes.APP_LOAD_ERROR


def preflight(config: Config) -> None:
    """Raise PreflightError for the first thing that would keep `config` from starting."""
    for value in config.bind:
        reason = _bind_problem(value)
        if reason is not None:
            raise PreflightError(None, None, None, "bind", f"cannot bind {value}: {reason}")
    if isinstance(config.app, str):
        _try_in_child(config)


def _bind_problem(value: str) -> str | None:
    spec = parse_bind(value)
    if spec.kind == "unix":
        directory = os.path.dirname(os.path.abspath(spec.path))
        if not os.path.isdir(directory):
            return f"directory {directory} does not exist"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"directory {directory} is not writable"
        return None
    if spec.kind != "tcp":
        # fd://N names a descriptor of the process that will start, not of this one.
        return None
    try:
        infos = socket.getaddrinfo(spec.host, 0, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return str(exc.strerror)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return None
            return exc.strerror or str(exc)
    return None


def _try_in_child(config: Config) -> None:
    spec = {
        "app": config.app,
        "app_dir": config.app_dir,
        "factory": config.factory,
        "log_config": config.log_config,
        "log_level": config.log_level,
        "log_format": config.log_format,
    }
    path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "serve.supervisor.preflight", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            timeout=config.boot_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        message = (
            f"importing {config.app!r} took longer than boot_timeout ({config.boot_timeout:g}s)"
        )
        raise _AppError(None, None, None, "app", message) from None
    lines = [line for line in result.stdout.splitlines() if line.startswith(_VERDICT)]
    verdict = lines[-1].removeprefix(_VERDICT) if lines else ""
    if result.returncode == exitcodes.OK and verdict == "ok":
        return
    if result.returncode == exitcodes.CONFIG_ERROR and verdict:
        raise PreflightError(None, None, None, None, verdict)
    reason = verdict or f"the import ended with exit code {result.returncode}"
    raise _AppError(None, None, None, "app", reason)


def _child(spec: dict[str, object]) -> int:
    """In the child: apply log_config, then import the app; print the verdict."""
    from serve.server.entry import app_load_error
    from serve.supervisor.logsetup import LogFormat, try_log_config

    log_config = spec["log_config"]
    if isinstance(log_config, str):
        log_format: LogFormat = "json" if spec["log_format"] == "json" else "text"
        error = try_log_config(log_config, str(spec["log_level"]), log_format)
        if error is not None:
            print(_VERDICT + error, flush=True)
            return exitcodes.CONFIG_ERROR
    error = app_load_error(
        str(spec["app"]), factory=bool(spec["factory"]), app_dir=str(spec["app_dir"])
    )
    if error is not None:
        print(_VERDICT + error, flush=True)
        return exitcodes.APP_LOAD_ERROR
    print(_VERDICT + "ok", flush=True)
    return exitcodes.OK


if __name__ == "__main__":
    raise SystemExit(_child(json.loads(sys.argv[1])))
