"""An app that shows what a worker's cyclic collector sees once it serves.

Importing it leaves one reference cycle of garbage in the oldest generation (made
unreachable after a full collection moved it there), which only a full collection frees:
`/` answers whether it was freed, and how many objects the worker froze (gc.freeze).
`/cycle` leaves a new cycle of garbage, `/collect` runs a full collection and answers how
many of those cycles were freed so far.
"""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any


class Node:
    def __init__(self) -> None:
        self.me = self


freed = {"import": False, "requests": 0}


def _freed_at_import() -> None:
    freed["import"] = True


def _freed_at_request() -> None:
    freed["requests"] += 1


_old = Node()
weakref.finalize(_old, _freed_at_import)
# The cycle survives a full collection while referenced, so it now sits in the oldest
# generation, where no young collection looks.
gc.collect()
del _old


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/cycle":
        weakref.finalize(Node(), _freed_at_request)
    elif scope["path"] == "/collect":
        gc.collect()
    doc = {
        "frozen": gc.get_freeze_count(),
        "import_freed": freed["import"],
        "requests_freed": freed["requests"],
    }
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
