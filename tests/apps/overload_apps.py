"""Apps for the overload tests (request_timeout, shedding, fd exhaustion).

- /sleep?s=N: logs "app: sleeping /sleep", answers after sleeping N seconds; logs
  "app: cancelled /sleep" from its cancellation handler and "app: finally /sleep" from its
  finally.
- /stream?s=N: sends its head and a first chunk at once, then sleeps N seconds before the end.
- /background?s=N: answers at once, then keeps running N seconds inside the app call.
- /burn?ms=N: holds the event loop N milliseconds (CPU work that does not await), then answers.
- /fail-mid-500: starts a 500 response of its own, sends part of its body, then raises.
- anything else: 200 "ok".
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

from app_helpers import log

HEAD = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def _arg(scope: dict[str, Any], name: str) -> float:
    return float(parse_qs(scope["query_string"].decode())[name][0])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/sleep":
        log(f"sleeping {path}")
        try:
            await asyncio.sleep(_arg(scope, "s"))
        except asyncio.CancelledError:
            log(f"cancelled {path}")
            raise
        finally:
            log(f"finally {path}")
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/stream":
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        try:
            await asyncio.sleep(_arg(scope, "s"))
        finally:
            log(f"finally {path}")
        await send({"type": "http.response.body", "body": b"last"})
    elif path == "/background":
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(_arg(scope, "s"))
        log(f"background finished {path}")
    elif path == "/burn":
        end = time.perf_counter() + _arg(scope, "ms") / 1000
        while time.perf_counter() < end:
            pass
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"burnt"})
    elif path == "/fail-mid-500":
        await send({**HEAD, "status": 500})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("failed mid-response")
    else:
        await send(HEAD)
        await send({"type": "http.response.body", "body": b"ok"})
