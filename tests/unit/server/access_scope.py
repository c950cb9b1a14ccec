"""A request as the access log takes it: the ASGI scope of a method, target and version."""

from __future__ import annotations

from typing import Any

from serve.server.accesslog import AccessLogger


def log_request(  # noqa: PLR0917
    access: AccessLogger,
    client: tuple[str, int] | None,
    method: str,
    target: str,
    http_version: str,
    status: int,
    nbytes: int,
    duration_s: float,
) -> None:
    """`access`'s line for one request, `target` being the path and query as decoded."""
    path, mark, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "client": client,
        "method": method,
        "path": path,
        "query_string": query.encode("latin-1") if mark else b"",
        "http_version": http_version,
    }
    access.log_scope(scope, status, nbytes, duration_s)
