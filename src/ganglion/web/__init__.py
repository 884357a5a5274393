"""The web chat interface: hypercorn + quart-trio, one websocket per browser tab."""

from ganglion.web.auth import load_or_create_token, read_token
from ganglion.web.server import WebState, create_app, serve_web

__all__ = ["WebState", "create_app", "load_or_create_token", "read_token", "serve_web"]
