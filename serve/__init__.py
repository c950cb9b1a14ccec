"""serve: a production ASGI server and process supervisor.

`import serve; serve.run("myapp.main:app", workers=4)` is the counterpart of uvicorn.run().
The code lives in two packages: serve.supervisor, the master (config, sockets, signals,
the fleet of workers), and serve.server, one worker (the event loop, HTTP/1.1, HTTP/2,
WebSocket, the ASGI cycle). Their folders sit at the top of the repository; this package
names them so that serve never takes the top-level names `server` and `supervisor`, which
an app's own modules (a `server.py`) or PyPI's supervisord may hold. Importing it stays
cheap: no YAML, no event loop, no fork.
"""

from __future__ import annotations

from serve.supervisor import __version__, run

__all__ = ["__version__", "run"]
