"""The web chat interface: hypercorn + quart-trio, one websocket per browser tab."""

from ganglion.web.server import WebState, run_web

__all__ = ["WebState", "run_web"]
