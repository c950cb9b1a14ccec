"""ASGI lifespan (spec 2.0): one app task per worker, alive from startup to shutdown.

Rules:
- startup() either returns (the worker may report READY) or raises LifespanFailed with a
  one-line message, which the caller logs and reports to the master; only what does not
  fit on that line (a traceback) is logged here.
- shutdown() never raises an app problem; it logs it. Only the caller's own cancellation
  (the worker's shutdown deadline) propagates, and it cancels the app task on the way.
- No timeouts live here: the worker bounds startup and shutdown with its own deadlines.
- mode "auto": an app that raises or returns without touching receive/send is taken to
  not support lifespan (e.g. `assert scope["type"] == "http"`) and the worker runs without
  it. Once the app has called receive or send it is speaking the protocol, so a failure
  from then on is a real startup failure in every mode (unlike uvicorn, which keeps
  serving an app whose startup raised).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any, Literal

from serve.server.errors import LifespanFailed
from serve.server.types import ASGIApp, Message

_STARTUP_ANSWERS = ("lifespan.startup.complete", "lifespan.startup.failed")
_SHUTDOWN_ANSWERS = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


class _Phase(enum.Enum):
    IDLE = "idle"
    STARTING = "starting up"
    STARTED = "running"
    SHUTTING_DOWN = "shutting down"
    FINISHED = "finished"


class Lifespan:
    def __init__(
        self, app: ASGIApp, mode: Literal["auto", "on", "off"], logger: logging.Logger
    ) -> None:
        # Given to the app in the lifespan scope; the worker copies it into every request
        # scope, which is how `request.state` sees what startup stored.
        self.state: dict[str, Any] = {}
        self._app = app
        self._mode = mode
        self._logger = logger
        self._phase = _Phase.IDLE
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup_answered = asyncio.Event()
        self._shutdown_answered = asyncio.Event()
        # True once the app has called receive() or send(): it speaks lifespan.
        self._engaged = False
        # The type of the app's answer in the current phase, and its failure message.
        self._answer: str | None = None
        self._failure = ""
        self._app_error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        if self._phase is not _Phase.IDLE:
            raise RuntimeError("Lifespan.startup() may run only once")
        if self._mode == "off":
            self._phase = _Phase.FINISHED
            return
        self._phase = _Phase.STARTING
        task = asyncio.get_running_loop().create_task(self._run())
        task.add_done_callback(self._on_app_done)
        self._task = task
        self._inbox.put_nowait({"type": "lifespan.startup"})
        try:
            await self._startup_answered.wait()
        except asyncio.CancelledError:
            self._phase = _Phase.FINISHED
            task.cancel()
            raise
        if self._answer == "lifespan.startup.complete":
            self._logger.info("Application startup complete")
            return
        self._phase = _Phase.FINISHED
        if self._answer == "lifespan.startup.failed":
            await self._settle(task)
            raise self._startup_failed_message()
        self._app_ended_during_startup()

    async def shutdown(self) -> None:
        task = self._task
        if self._phase is not _Phase.STARTED or task is None or task.done():
            self._phase = _Phase.FINISHED
            return
        self._phase = _Phase.SHUTTING_DOWN
        self._answer = None
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            await self._shutdown_answered.wait()
            await self._settle(task)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._phase = _Phase.FINISHED
        self._report_shutdown()

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        await self._app(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        self._engaged = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        self._engaged = True
        kind = message.get("type")
        if self._phase is _Phase.STARTING and kind in _STARTUP_ANSWERS:
            self._record_answer(message)
            if kind == "lifespan.startup.complete":
                self._phase = _Phase.STARTED
            self._startup_answered.set()
        elif self._phase is _Phase.SHUTTING_DOWN and kind in _SHUTDOWN_ANSWERS:
            self._record_answer(message)
            self._shutdown_answered.set()
        else:
            raise RuntimeError(
                f"unexpected ASGI lifespan message {kind!r} while {self._phase.value}"
            )

    def _record_answer(self, message: Message) -> None:
        self._answer = message["type"]
        self._failure = str(message.get("message") or "")

    def _on_app_done(self, task: asyncio.Task[None]) -> None:
        # Whatever happened, nobody may keep waiting for an answer from a finished app.
        self._startup_answered.set()
        self._shutdown_answered.set()
        if task.cancelled():
            return
        # Retrieving the exception here also keeps asyncio from reporting it as unhandled.
        self._app_error = task.exception()
        if self._phase is not _Phase.STARTED:
            return  # startup() and shutdown() report what happens during their phase
        if self._app_error is not None:
            self._logger.error(
                "ASGI lifespan task failed after startup; lifespan shutdown will be skipped",
                exc_info=self._app_error,
            )
        else:
            self._logger.info("ASGI lifespan task returned before shutdown was requested")

    async def _settle(self, task: asyncio.Task[None]) -> None:
        """After the app's answer, let its task end: what follows an answer is leftovers."""
        if not task.done():
            task.cancel()
        await asyncio.wait({task})

    def _startup_failed_message(self) -> LifespanFailed:
        # Frameworks (Starlette among them) put a whole traceback in the message: log it
        # in full, hand the caller its last line, which names the exception.
        message = self._failure.strip()
        if "\n" in message:
            self._logger.error("ASGI lifespan startup failed:\n%s", message)
        if self._app_error is not None:
            self._logger.debug("the lifespan task then raised", exc_info=self._app_error)
        if not message:
            return LifespanFailed("the app sent lifespan.startup.failed without a message")
        return LifespanFailed(message.splitlines()[-1].strip())

    def _app_ended_during_startup(self) -> None:
        error = self._app_error
        if not self._engaged and self._mode == "auto":
            reason = f" ({_summary(error)})" if error is not None else ""
            self._logger.info(
                "ASGI lifespan not supported by the app%s; continuing without it", reason
            )
            return
        if error is None:
            raise LifespanFailed("the app returned without sending lifespan.startup.complete")
        self._logger.error("ASGI lifespan startup raised an exception", exc_info=error)
        raise LifespanFailed(_summary(error))

    def _report_shutdown(self) -> None:
        if self._answer == "lifespan.shutdown.failed":
            message = self._failure.strip() or "(no message)"
            separator = "\n" if "\n" in message else " "
            self._logger.error("ASGI lifespan shutdown failed:%s%s", separator, message)
            if self._app_error is not None:
                self._logger.debug("the lifespan task then raised", exc_info=self._app_error)
        elif self._app_error is not None:
            self._logger.error(
                "ASGI lifespan shutdown raised an exception", exc_info=self._app_error
            )
        elif self._answer is None:
            self._logger.warning(
                "ASGI lifespan task returned without sending lifespan.shutdown.complete"
            )
        else:
            self._logger.info("Application shutdown complete")


def _summary(error: BaseException) -> str:
    text = " | ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
