"""The worker's entry after fork: logging, uvloop, app import, run; the exit-code contract.

Rules: the master calls run_worker() in the child and passes its return value to os._exit.
Nothing here calls sys.exit. Import failures become exit code 4 and lifespan failures exit
code 3, each reported on the channel first so the master can say why.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import socket

import uvloop

from serve.server import channel as ch
from serve.server.allocator import tune_allocator
from serve.server.app_loader import load_app
from serve.server.errors import AppLoadError
from serve.server.exitcodes import APP_LOAD_ERROR
from serve.server.logs import configure_logging
from serve.server.settings import WorkerSettings
from serve.server.worker import Worker

logger = logging.getLogger("serve")


def run_worker(
    settings: WorkerSettings, listeners: list[socket.socket], channel: socket.socket
) -> int:
    configure_logging(
        settings.log_level, settings.log_format, settings.log_file, log_config=settings.log_config
    )
    # SIGABRT from the master (a blocked loop) dumps every thread's stack to stderr.
    faulthandler.enable(all_threads=True)
    tune_allocator()
    try:
        app = load_app(settings.app, factory=settings.factory, app_dir=settings.app_dir)
    except AppLoadError as exc:
        logger.error("%s", exc)
        with contextlib.suppress(OSError):
            channel.send(ch.encode(ch.WorkerBootFailed(APP_LOAD_ERROR, str(exc))))
        return APP_LOAD_ERROR
    worker = Worker(settings, app, listeners, channel)
    return uvloop.run(worker.run())


def app_load_error(app: str, *, factory: bool, app_dir: str) -> str | None:
    """Why a worker could not import `app` (the message it would exit with code 4 for), or
    None when the import works: `serve check` asks this in a child process, before any fork."""
    try:
        load_app(app, factory=factory, app_dir=app_dir)
    except AppLoadError as exc:
        return str(exc)
    return None
