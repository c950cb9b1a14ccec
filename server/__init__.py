"""serve.server, the worker: one uvloop event loop serving HTTP/1.1, HTTP/2 and WebSocket
to an ASGI app.

Rules: nothing here imports from supervisor/; a worker knows its settings, its inherited
listening sockets and its channel to the master, and nothing else. Imports go one way,
down this map (tests/unit/test_layering.py checks there is no circle):

  entry, worker            the process: lifespan, listeners, heartbeat, drain
  h2_dispatch              which protocol a new connection speaks
  h1_connection            HTTP/1.1: h1_parser (+ h1_head, h1_body, h1_validate,
                           h1_chunked) in, h1_pipeline (requests in order, keep-alive),
                           h1_response (+ h1_writer) out, h1_upgrade to hand over
  h2_handover, h2_connection, h2_ending, h2_writer, h2_outbound, h2_streams, h2_stream,
  h2_scope                 HTTP/2 on the h2 library, the session's writer alone feeding h2
  ws_handover, ws_connection, ws_asgi, ws_inbox, ws_reply, ws_handshake
                           WebSocket on wsproto
  context                  what the three protocols share: connections, app tasks,
                           request accounting (STATS, access log), shedding
  scope, cycle, deadline   one ASGI scope builder, one request/response cycle, one deadline
                           mechanism for all three
  app_run, request_body    one way to run an app call (HTTP and WebSocket): its errors,
                           its end; the request body the cycle hands to receive()
  connection_info, http_fields, http_target, events, errors, flow, write_batch, stats
                           leaves: connection facts, shared HTTP rules, neutral events
"""
