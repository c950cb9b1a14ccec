"""Running one ASGI app call, once for HTTP (server.cycle) and WebSocket (server.ws_asgi).

Rules: protocol-neutral; `run_app` is the coroutine of every app task the worker starts for
a request or a WebSocket. It calls the app with its side's scope, receive and send; logs an
app failure once (at debug when it is our ClientDisconnected coming back after the client
left, since the spec asks servers not to report it); lets the side finish what the app left
undone, unless the client is gone (`app_ended`: a 500 or a cut response, a refused
handshake, a 1000 or 1011 close); and tells the tracker, from inside the task, that the app
is over. Cancellation (request_timeout, the worker's shutdown) passes through.
The errors send() raises at an app that breaks the protocol's order are built here too, so
each reads the same on both protocols: RuntimeError for ASGI misuse, ClientDisconnected (an
OSError, ASGI spec 2.4) once the connection is gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from serve.server.errors import ClientDisconnected, InvalidResponse
from serve.server.types import ASGIApp, Message, Scope

logger = logging.getLogger("serve")


class AppSide(Protocol):
    """The protocol's side of one app call: an HTTP cycle or a WebSocket's app side."""

    scope: Scope
    # The app's task, once it suspended (WorkerContext.app_started).
    task: asyncio.Task[None] | None

    @property
    def disconnected(self) -> bool:
        """The client (or the connection) is gone: the app's sends can no longer land."""
        ...

    async def receive(self) -> Message: ...
    async def send(self, message: Message) -> None: ...

    def app_ended(self, failed: bool) -> None:
        """The app returned (or raised) with its client still there: finish its part."""
        ...


class AppTracker(Protocol):
    """Who counts the running apps (server.context.WorkerContext)."""

    def app_finished(self, run: AppSide) -> None: ...


async def run_app(app: ASGIApp, side: AppSide, tracker: AppTracker) -> None:
    try:
        await app(side.scope, side.receive, side.send)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the app's failure must never take the worker down
        if isinstance(exc, ClientDisconnected) and side.disconnected:
            logger.debug("ASGI app ended after its client left: %s", exc)
        elif isinstance(exc, InvalidResponse):
            logger.error("invalid response from the ASGI app: %s", exc)
        else:
            logger.error("exception in the ASGI app (%s)", side.scope["type"], exc_info=exc)
        if not side.disconnected:
            side.app_ended(True)
    else:
        if not side.disconnected:
            side.app_ended(False)
    finally:
        tracker.app_finished(side)


def returned_unfinished(what: str) -> None:
    """The app returned without finishing `what`: the server finishes it, and says so."""
    logger.error("ASGI app returned without completing %s", what)


def unexpected(kind: str, expected: str) -> RuntimeError:
    return RuntimeError(f"unexpected ASGI message {kind!r}: expected {expected}")


def sent_after_end(kind: str, what: str) -> RuntimeError:
    """The app sent more after it completed `what` itself (its response, its close)."""
    return RuntimeError(f"{kind!r} sent after {what} was complete")


def sent_after_close(kind: str) -> ClientDisconnected:
    return ClientDisconnected(f"{kind!r} sent after the connection closed")


def closed_while_sending(kind: str) -> ClientDisconnected:
    """A send waited for the client to read, and the connection closed meanwhile."""
    return ClientDisconnected(f"the connection closed before the client read {kind!r}")
