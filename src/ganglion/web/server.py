"""The web interface actor: serves the app with hypercorn's trio worker.

Start-up goes through `nursery.start`: the actor reports ready only once hypercorn has
bound its sockets (the real address is logged, so port 0 works). When the actor's mailbox
is closed (shutdown), `/readyz` starts failing and hypercorn is asked to stop through its
`shutdown_trigger`; it then gives open connections `graceful_seconds` before cancelling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from ganglion.config import WebConfig
from ganglion.messages import Outbound
from ganglion_actors import Inbox

__all__ = ["WebState", "create_app", "run_web"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WebState:
    """What the HTTP handlers may know about the daemon."""

    ready: bool = False
    draining: bool = False
    binds: list[str] = field(default_factory=list)


def create_app(state: WebState) -> QuartTrio:
    app = QuartTrio("ganglion", static_folder=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", content_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.ready and not state.draining:
            return Response("ready\n", content_type="text/plain")
        return Response("not ready\n", status=503, content_type="text/plain")

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        return response

    return app


def _bind(config: WebConfig) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{host}:{config.port}"


async def run_web(
    config: WebConfig,
    graceful_seconds: float,
    state: WebState,
    inbox: Inbox[Outbound],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web chat until the mailbox is closed, then drain."""
    hypercorn_config = HypercornConfig()
    hypercorn_config.bind = [_bind(config)]
    hypercorn_config.graceful_timeout = graceful_seconds
    hypercorn_config.accesslog = None
    hypercorn_config.errorlog = logging.getLogger("hypercorn.error")
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        state.binds = await nursery.start(
            lambda task_status: serve(
                create_app(state),
                hypercorn_config,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        state.ready = True
        log.info("web chat listening on %s", ", ".join(state.binds))
        task_status.started()
        async for event in inbox:
            log.debug("web: no session for %s", event)
        state.draining = True
        stop.set()
