"""serve.supervisor: the master, and the programmatic start behind `serve.run`.

Programmatic start, the counterpart of uvicorn.run(): `serve.run("myapp.main:app",
workers=4)`. Rules: importing this package stays cheap (no YAML, no event loop, no fork);
run() imports the loader and the arbiter only when called, and raises ConfigError instead
of exiting, because the caller owns the process.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serve.server.settings import ASGIApp

__version__ = "0.1.0"
__all__ = ["__version__", "run"]


def run(
    app: str | ASGIApp,
    *,
    host: str | None = None,
    port: int | None = None,
    config: str | None = None,
    **settings: object,
) -> int:
    """Serve `app` until the master stops; return its exit code (0 on a clean stop).

    `app` is an import string "module:attr" or the app object itself; an object reaches the
    workers through fork, so workers > 1 works, but reload needs the import string (a
    forked object cannot be imported afresh). `settings` are Config field names and sit on
    top of the same layers as the command line: defaults < `config` file < SERVE_*
    environment < keywords. `host`/`port` (default 127.0.0.1:8000) set `bind` when either
    is given and `bind` is not; left out, the config file's or environment's bind stays.
    uvicorn's keyword names (timeout_keep_alive, ssl_keyfile, ...) are translated or
    answered with serve's way (supervisor.uvicorn_names). Raises ConfigError for an unknown
    keyword (with a did-you-mean), a bad value, or reload with an app object.
    """
    from serve.supervisor.config_loader import load_config, unknown_env_warnings
    from serve.supervisor.upgrade import INTERNAL_ENV
    from serve.supervisor.uvicorn_names import translate

    for warning in unknown_env_warnings(os.environ, INTERNAL_ENV):
        print(f"serve: warning: {warning}", file=sys.stderr)
    settings = translate(settings)
    values: dict[str, object] = {**settings, "app": app}
    if "bind" not in settings and (host is not None or port is not None):
        host = host or "127.0.0.1"
        address = f"[{host}]" if ":" in host else host
        values["bind"] = (f"{address}:{8000 if port is None else port}",)
    effective = load_config(config, os.environ, values, cli_kind="keywords")
    if not isinstance(app, str) and effective.reload.enabled:
        from serve.supervisor.config_loader import ConfigError

        raise ConfigError(
            None,
            None,
            None,
            "reload",
            f"needs the app as an import string, like serve.run({_import_string(app)!r}, "
            "reload=True): an app object reaches the workers through fork, so a reload could "
            "not import the edited code",
        )

    from serve.supervisor.arbiter import run_master

    return run_master(effective)


def _import_string(app: object) -> str:
    """'module:name' for an app object, for the message that asks for it."""
    module = getattr(app, "__module__", None) or "module"
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        module = os.path.splitext(os.path.basename(main_file))[0] if main_file else "main"
    return f"{module}:{getattr(app, '__qualname__', 'app')}"
