"""serve.server, the worker: one uvloop event loop serving HTTP/1.1, HTTP/2 and WebSocket
to an ASGI app.

Rules: nothing here imports from supervisor/; a worker knows its settings, its inherited
listening sockets and its channel to the master, and nothing else.
"""
