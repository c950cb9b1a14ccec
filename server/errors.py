"""Typed errors of the worker, translated only at boundaries.

Rules: the framing layer turns protocol errors into ParseFailed events with the status here;
entry.py turns AppLoadError and LifespanFailed into the exit-code contract.
"""

from __future__ import annotations


class AppLoadError(Exception):
    """The ASGI app could not be imported or built (worker exit code 4)."""


class LifespanFailed(Exception):
    """The app's lifespan startup failed (worker exit code 3)."""
