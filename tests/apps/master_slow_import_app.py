"""An app module whose import takes a minute: its worker is still booting when stopped."""

import sys
import time

print("app: import is waiting", file=sys.stderr, flush=True)
time.sleep(60)


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    raise RuntimeError("never served: the import does not finish in any test")
