"""The web chat interface: hypercorn + quart-trio, one websocket per browser tab.

    frames.py    the protocol's frame names and the client's frames (pure, no pydantic:
                 `ganglion chat` imports it without the daemon)
    protocol.py  the server's side: client frames validated, events and history as frames
    auth.py      the access token and the throttle on wrong ones
    session.py   one websocket session, and the hub that fans events out to them
    server.py    the quart app, `serve_web` and `web_child` (how the tree runs it)

Nothing is imported here, so the client side costs only what it uses.
"""
