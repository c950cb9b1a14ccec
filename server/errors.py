"""Typed errors of the worker, translated only at boundaries.

Rules: the framing layer turns protocol errors into ParseFailed events with the status here;
entry.py turns AppLoadError and LifespanFailed into the exit-code contract; ClientDisconnected
goes to the app from send() and, when it comes back out of the app, is no app failure.
"""

from __future__ import annotations


class AppLoadError(Exception):
    """The ASGI app could not be imported or built (worker exit code 4)."""


class LifespanFailed(Exception):
    """The app's lifespan startup failed (worker exit code 3)."""


class ClientDisconnected(OSError):
    """send() on a connection or stream the client has left (ASGI spec 2.4): the app must
    not believe its response went out. Frameworks catch OSError as a disconnect."""
