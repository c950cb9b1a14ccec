"""The worker: one uvloop event loop serving HTTP/1.1 to an ASGI app.

Rules: nothing here imports from supervisor/; a worker knows its settings, its inherited
listening sockets and its channel to the master, and nothing else.
"""
