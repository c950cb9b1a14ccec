"""What several test apps share: the log line tests read, and reading a whole body.

Test apps are loaded by serve from this folder (their app_dir), so they import this module
by its bare name; apps that tests also import as tests.apps.* keep their own helpers.
"""

from __future__ import annotations

import sys
from typing import Any


def log(message: str) -> None:
    # Tests read the server log to see what the app observed.
    print(f"app: {message}", file=sys.stderr, flush=True)


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
