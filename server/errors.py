"""Typed errors of the worker, translated only at boundaries.

Rules: the framing layers (HTTP/1.1, HTTP/2) raise RequestRejected and turn it into a status
answered without the app; an app's response that cannot be encoded safely raises
InvalidResponse, which the cycle turns into a 500; entry.py turns AppLoadError and
LifespanFailed into the exit-code contract; ClientDisconnected goes to the app from send()
and, when it comes back out of the app, is no app failure.
"""

from __future__ import annotations


class AppLoadError(Exception):
    """The ASGI app could not be imported or built (worker exit code 4)."""


class LifespanFailed(Exception):
    """The app's lifespan startup failed (worker exit code 3)."""


class ClientDisconnected(OSError):
    """send() on a connection or stream the client has left (ASGI spec 2.4): the app must
    not believe its response went out. Frameworks catch OSError as a disconnect."""


class RequestRejected(Exception):
    """The request cannot be served; the connection answers `status` (and an HTTP/1.1
    connection closes)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class InvalidResponse(Exception):
    """The app asked for a response that cannot be encoded safely."""
