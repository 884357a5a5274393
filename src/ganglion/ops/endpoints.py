"""The operator's HTTP routes.

On the web chat's server, token required like the chat:

- `GET /api/status`: `ops.status.snapshot` as JSON (what `ganglion status` prints);
- `GET /metrics`: Prometheus exposition (`ops.metrics`); scrape it with the token as a
  Bearer credential (Prometheus: `authorization: {credentials_file: .../web_token}`).

`ops_routes(view)` is handed to the web chat (`WebState.extensions`), which registers
them on its app with its own request check (host, throttle, token).

With `web.metrics_bind` set, `metrics_child` also serves `GET /metrics` alone, without
the token, on that loopback-only address (the configuration refuses any other): for a
Prometheus on the same machine. Requests naming another host than a loopback one are
refused, so a web page cannot read it through DNS rebinding.
"""

from __future__ import annotations

import json
import logging
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from quart import Response, request
from quart_trio import QuartTrio

from ganglion.backend import INTERFACE_BACKOFF
from ganglion.ops.metrics import CONTENT_TYPE, render_metrics
from ganglion.ops.status import DaemonView, snapshot
from ganglion.web.server import Extension, RequestCheck, start_hypercorn
from ganglion_actors import ChildSpec, Inbox, Restart

__all__ = ["metrics_child", "ops_routes", "serve_metrics"]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "[::1]", "localhost")


def ops_routes(view: DaemonView) -> Extension:
    """The routes reading `view`, for `WebState.extensions`."""

    def register(app: QuartTrio, refusal: RequestCheck) -> None:
        @app.get("/api/status")
        async def status() -> Response:
            if (refused := await refusal()) is not None:
                return refused
            body = json.dumps(await snapshot(view))
            return Response(body, content_type="application/json", headers=_no_store())

        @app.get("/metrics")
        async def metrics() -> Response:
            if (refused := await refusal()) is not None:
                return refused
            body = await render_metrics(view)
            return Response(body, content_type=CONTENT_TYPE, headers=_no_store())

    return register


def metrics_child(host: str, port: int, view: DaemonView) -> ChildSpec[None]:
    """The token-less metrics listener as the root supervisor runs it: restarted with
    backoff for as long as it fails, never stopping anything else."""
    return ChildSpec(
        "metrics",
        partial(serve_metrics, host, port, view),
        restart=Restart.TRANSIENT,
        backoff=INTERFACE_BACKOFF,
        escalates=False,
    )


async def serve_metrics(
    host: str,
    port: int,
    view: DaemonView,
    inbox: Inbox[None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `GET /metrics` on `host:port` (a loopback address) until the mailbox ends.

    Error handling: an address that cannot be listened on is a `StartupError` naming it.
    """
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    hosts: set[str] = set()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await start_hypercorn(
            nursery,
            _metrics_app(view, hosts),
            config,
            stop,
            "the metrics listener",
            "web.metrics_bind",
        )
        bound_port = binds[0].rpartition(":")[2]
        hosts |= {f"{name}:{bound_port}" for name in LOOPBACK_NAMES}
        log.info("metrics served without the token at %s/metrics", binds[0])
        task_status.started()
        async for _ in inbox:
            pass
        stop.set()


def _metrics_app(view: DaemonView, hosts: set[str]) -> QuartTrio:
    app = QuartTrio("ganglion-metrics", static_folder=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        if request.headers.get("Host") not in hosts:
            return Response("unknown host\n", status=421, content_type="text/plain")
        body = await render_metrics(view)
        return Response(body, content_type=CONTENT_TYPE, headers=_no_store())

    return app


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}
