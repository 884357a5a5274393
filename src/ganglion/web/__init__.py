"""The web chat interface: hypercorn + quart-trio, one websocket per browser tab.

    frames.py    the protocol's one definition: frame names, every frame's fields and
                 the limits of the client's (no pydantic: `ganglion chat` imports it
                 without the daemon)
    protocol.py  the server's side: client frames validated against that definition,
                 the store's refusals as error codes, events and history as frames
    auth.py      the access token and the throttle on wrong ones
    session.py   one websocket session (it reads the store's library directly and asks
                 the daemon for every change), and the hub that fans events out
    uploads.py   files in and out over HTTP with the token (the inbox), served safely
    server.py    the quart app, `serve_web` and `web_child` (how the tree runs it)

Nothing is imported here, so the client side costs only what it uses.
"""
