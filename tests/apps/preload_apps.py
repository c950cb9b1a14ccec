"""An app with a sizeable import for the preload tests: who imported it, who serves, and
how much memory its workers share.

Importing the module builds TABLE, about 45 MiB of small Python objects (tuples, strings,
ints, floats: what an ORM's metadata or a loaded model looks like to the collector), and
prints which process imported it. `app` answers with the worker's pid, VERSION and the rows; /gc
runs a full collection first, which would write to every object's header (and so copy
every page holding one) in a worker whose collector can see the imported objects;
/pdeathsig answers the signal the worker gets when its parent dies in place of VERSION.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from typing import Any

VERSION = os.environ.get("PRELOAD_APP_VERSION", "one")
ROWS = 150_000

PR_GET_PDEATHSIG = 2

TABLE = [(f"row {i}", i, float(i), [i]) for i in range(ROWS)]
print(f"app: preload_apps imported in {os.getpid()}", file=sys.stderr, flush=True)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/gc":
        gc.collect()
    version = _death_signal() if scope["path"] == "/pdeathsig" else VERSION
    body = f"{os.getpid()} {version} {len(TABLE)}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _death_signal() -> str:
    value = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return str(value.value)
