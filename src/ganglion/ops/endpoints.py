"""The operator's two HTTP routes on the web chat's server, token required like the chat:

- `GET /api/status`: `ops.status.snapshot` as JSON (what `ganglion status` prints);
- `GET /metrics`: Prometheus exposition (`ops.metrics`); scrape it with the token as a
  Bearer credential (Prometheus: `authorization: {credentials_file: .../web_token}`).

`ops_routes(view)` is handed to the web chat (`WebState.extensions`), which registers
them on its app with its own request check (host, throttle, token).
"""

from __future__ import annotations

import json

from quart import Response
from quart_trio import QuartTrio

from ganglion.ops.metrics import CONTENT_TYPE, render_metrics
from ganglion.ops.status import DaemonView, snapshot
from ganglion.web.server import Extension, RequestCheck

__all__ = ["ops_routes"]


def ops_routes(view: DaemonView) -> Extension:
    """The routes reading `view`, for `WebState.extensions`."""

    def register(app: QuartTrio, refusal: RequestCheck) -> None:
        @app.get("/api/status")
        async def status() -> Response:
            if (refused := refusal()) is not None:
                return refused
            body = json.dumps(await snapshot(view))
            return Response(body, content_type="application/json", headers=_no_store())

        @app.get("/metrics")
        async def metrics() -> Response:
            if (refused := refusal()) is not None:
                return refused
            body = await render_metrics(view)
            return Response(body, content_type=CONTENT_TYPE, headers=_no_store())

    return register


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}
