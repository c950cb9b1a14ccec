"""The worker's entry after fork: logging, uvloop, app import, run; the exit-code contract.

Rules: the master calls run_worker() in the child and passes its return value to os._exit.
Nothing here calls sys.exit. Import failures become exit code 4 and lifespan failures exit
code 3, each reported on the channel first so the master can say why. A preload template
uses the three steps apart: prepare_process() and load() once in the template, then
prepare_process() again and serve() in each worker it forks.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import socket

import uvloop

from serve.server import channel as ch
from serve.server.access_buffer import flush_on_abort
from serve.server.accesslog import AccessLogger, access_logger
from serve.server.allocator import tune_allocator
from serve.server.app_loader import load_app
from serve.server.errors import AppLoadError
from serve.server.exitcodes import APP_LOAD_ERROR
from serve.server.logs import configure_logging
from serve.server.settings import WorkerSettings
from serve.server.types import ASGIApp
from serve.server.worker import Worker

logger = logging.getLogger("serve")


def run_worker(
    settings: WorkerSettings, listeners: list[socket.socket], channel: socket.socket
) -> int:
    prepare_process(settings)
    app = load(settings, channel)
    if app is None:
        return APP_LOAD_ERROR
    return serve(settings, app, listeners, channel)


def prepare_process(settings: WorkerSettings) -> None:
    """Logging (idempotent: a log file is opened afresh), stack dumps, the allocator."""
    configure_logging(
        settings.log_level, settings.log_format, settings.log_file, log_config=settings.log_config
    )
    # SIGABRT from the master (a blocked loop) dumps every thread's stack to stderr.
    faulthandler.enable(all_threads=True)
    tune_allocator()


def load(settings: WorkerSettings, channel: socket.socket) -> ASGIApp | None:
    """The app, or None after logging why and reporting WorkerBootFailed on `channel`."""
    try:
        return load_app(settings.app, factory=settings.factory, app_dir=settings.app_dir)
    except AppLoadError as exc:
        logger.error("%s", exc)
        with contextlib.suppress(OSError):
            channel.send(ch.encode(ch.WorkerBootFailed(APP_LOAD_ERROR, str(exc))))
        return None


def serve(
    settings: WorkerSettings, app: ASGIApp, listeners: list[socket.socket], channel: socket.socket
) -> int:
    # Made here, in the worker: a buffer made in a preload template would be copied into
    # every worker it forks.
    access = access_logger(settings)
    if access is not None:
        # faulthandler (enabled by prepare_process) must be installed over the flush: it
        # dumps the stacks first, then chains to the handler it found.
        faulthandler.disable()
        flush_on_abort(access.flush)
        faulthandler.enable(all_threads=True)
    worker = Worker(settings, app, listeners, channel, access)
    return uvloop.run(_run_then_flush(worker, access))


async def _run_then_flush(worker: Worker, access: AccessLogger | None) -> int:
    # On the loop still: the buffer's flush timer belongs to it.
    try:
        return await worker.run()
    finally:
        if access is not None:
            access.flush()


def app_load_error(app: str, *, factory: bool, app_dir: str) -> str | None:
    """Why a worker could not import `app` (the message it would exit with code 4 for), or
    None when the import works: `serve check` asks this in a child process, before any fork."""
    try:
        load_app(app, factory=factory, app_dir=app_dir)
    except AppLoadError as exc:
        return str(exc)
    return None
