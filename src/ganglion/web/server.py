"""The web interface actor: the chat app served by hypercorn's trio worker.

Start-up goes through `nursery.start`: the actor reports ready only once hypercorn has
bound its sockets (the real address is logged with the ready-to-open URL, so port 0
works). Outbound events arrive in the actor's mailbox and are fanned out to the sockets
of their thread by the `Hub`; a tab that is not connected misses nothing, because its
history (with every final reply) is sent again when it reconnects. When the mailbox is
closed (shutdown), `/readyz` starts failing and hypercorn is asked to stop through its
`shutdown_trigger`; open sessions are closed at once and the other connections get at
most `WEB_DRAIN_SECONDS` (our HTTP answers take milliseconds, but hypercorn keeps a
connection that was opened and never used, as browsers' preconnects are, until then).

Files go over HTTP beside the websocket, with the token (`ganglion.web.uploads`):
`POST /api/files/<thread_id>` uploads one into the conversation's inbox (quart's
request-body limit is `web.max_upload_bytes`), `GET /api/files/<thread_id>/<file>`
serves one as a download.

The tree runs it with `web_child`: an interface that owns the `web_` threads' delivery
route while it runs, restarted with backoff whenever it fails; each incarnation first
loads (or creates) the access token and adds it to the daemon's own secrets in the
redactor, so no tool output ever hands it to the model and no log line shows it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import quote

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request, send_from_directory, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from ganglion.backend import LibraryBackend, interface_child
from ganglion.config import Config, WebConfig
from ganglion.datadir import WEB_TOKEN_FILE
from ganglion.delivery import DeliveryRouter
from ganglion.errors import StartupError
from ganglion.ids import WEB_THREAD_PATTERN
from ganglion.inbox import FileInbox
from ganglion.messages import FileSent, FinalReply, Outbound, ThreadRetitled, TurnStarted
from ganglion.redact import Redactor
from ganglion.safefs import SafePathError
from ganglion.store import Library
from ganglion.web.auth import (
    LEGACY_COOKIE,
    bearer_token,
    load_or_create_token,
    refuse_wrong_token,
    token_matches,
)
from ganglion.web.protocol import event_frame, thread_changed_frame
from ganglion.web.session import Hub, run_session
from ganglion.web.uploads import UploadError, Uploads, attachment_item
from ganglion_actors import ChildSpec, Inbox, unwrap_group

__all__ = ["Extension", "RequestCheck", "WebState", "create_app", "serve_web", "web_child"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Pictures in the chat are fetched with the token and shown from blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
WEB_DRAIN_SECONDS = 1.0
UNAUTHORISED = (
    "Ganglion needs its access token: send it as 'Authorization: Bearer <token>' (the "
    "data directory's web_token file holds it).\n"
)


# Checks the current request (host, token): None to proceed, else the refusal.
RequestCheck = Callable[[], Awaitable[Response | None]]
# Registers more routes on the app (the operator's /metrics and /api/status, ops.endpoints).
Extension = Callable[[QuartTrio, RequestCheck], None]


@dataclass(slots=True)
class WebState:
    """What the HTTP handlers may know about the daemon."""

    ready: bool = False
    draining: bool = False
    binds: list[str] = field(default_factory=list)
    # The origins a page of this chat may have, and the host names requests may name:
    # derived from `binds` once they are known (see `served_origins`).
    origins: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    extensions: list[Extension] = field(default_factory=list)


def create_app(
    state: WebState,
    backend: LibraryBackend,
    library: Library,
    hub: Hub,
    token: str,
    config: WebConfig,
    uploads: Uploads | None = None,
) -> QuartTrio:
    """The web chat's routes. The page and its static files need no token (they hold no
    secret); everything that reads or changes the daemon does: the websocket (its first
    frame, or a Bearer header), the files (`ganglion.web.uploads`) and the operator's
    routes (a Bearer header). See `ganglion.web.auth` for where the token travels."""
    app = QuartTrio("ganglion", static_folder=None)
    # quart refuses a body past 16 MB by default: an upload may be as large as its cap.
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", content_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.ready and not state.draining:
            return Response("ready\n", content_type="text/plain")
        return Response("not ready\n", status=503, content_type="text/plain")

    def foreign_host(host: str | None) -> Response | None:
        # A page of another name resolving to this address (DNS rebinding) gets nothing.
        if host is not None and host not in state.hosts:
            log.warning("refused a request for unknown host %r", host)
            return Response("unknown host\n", status=421, content_type="text/plain")
        return None

    async def refusal(host: str | None, authorization: str | None) -> Response | None:
        """Why a request may not proceed: an unknown Host, no token, a wrong token."""
        if (refused := foreign_host(host)) is not None:
            return refused
        presented = bearer_token(authorization)
        if not token_matches(presented, token):
            if presented is not None:
                await refuse_wrong_token()
            return Response(UNAUTHORISED, status=401, content_type="text/plain")
        return None

    async def page(path: str) -> Response:
        """The chat page at `path`. An old-style link (`?token=`) is sent on to the
        fragment form, which never leaves the browser again."""
        if (refused := foreign_host(request.headers.get("Host"))) is not None:
            return refused
        offered = request.args.get("token")
        if offered is not None:
            response = Response(
                "", status=303, headers={"Location": f"{path}#token={quote(offered, safe='')}"}
            )
        else:
            response = await send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-store"
        response.delete_cookie(LEGACY_COOKIE)
        return response

    @app.get("/")
    async def index() -> Response:
        return await page("/")

    @app.get("/c/<thread_id>")
    async def conversation(thread_id: str) -> Response:
        # A bookmark of one conversation; the page reads the id from its address.
        if not re.fullmatch(WEB_THREAD_PATTERN, thread_id):
            return Response("no such conversation\n", status=404, content_type="text/plain")
        return await page(f"/c/{thread_id}")

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return await send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml")

    @app.get("/static/<path:name>")
    async def static(name: str) -> Response:
        response = await send_from_directory(STATIC, name)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.websocket("/ws")
    async def ws() -> Response | None:
        if (refused := foreign_host(websocket.headers.get("Host"))) is not None:
            return refused
        # Browsers always send Origin on a websocket; clients without one are not pages.
        origin = websocket.headers.get("Origin")
        if origin is not None and origin not in state.origins:
            log.warning("refused a websocket from foreign origin %r", origin)
            return Response("foreign origin\n", status=403, content_type="text/plain")
        authorization = websocket.headers.get("Authorization")
        # A page cannot set headers on a websocket: it sends the token in its first frame.
        first_frame = origin is not None and authorization is None
        if not first_frame:
            refused = await refusal(None, authorization)
            if refused is not None:
                return refused
        await websocket.accept()
        socket = websocket._get_current_object()  # type: ignore[attr-defined]
        await run_session(
            socket, backend, library, hub, config, token if first_frame else None, uploads
        )
        return None

    async def check_request() -> Response | None:
        return await refusal(request.headers.get("Host"), request.headers.get("Authorization"))

    def refused_file(message: str, status: int) -> Response:
        return Response(
            json.dumps({"error": message}), status=status, content_type="application/json"
        )

    @app.post("/api/files/<thread_id>")
    async def upload(thread_id: str) -> Response:
        if (refused := await check_request()) is not None:
            return refused
        if uploads is None or not re.fullmatch(WEB_THREAD_PATTERN, thread_id):
            return refused_file("no such conversation", 404)
        try:
            uploads.refuse_size(request.content_length)
            data = await request.get_data(cache=False, as_text=False)
            assert isinstance(data, bytes)
            kept = await uploads.keep(
                thread_id,
                request.args.get("name") or "file",
                (request.content_type or "application/octet-stream").split(";")[0].strip(),
                data,
                voice=request.args.get("voice") == "1",
            )
        except UploadError as exc:
            return refused_file(str(exc), exc.status)
        except RequestEntityTooLarge:
            return refused_file(uploads.too_large(), 413)
        item = attachment_item(thread_id, kept)
        return Response(json.dumps(item), status=201, content_type="application/json")

    @app.get("/api/files/<thread_id>/<name>")
    async def download(thread_id: str, name: str) -> Response:
        if (refused := await check_request()) is not None:
            return refused
        if uploads is None or not re.fullmatch(WEB_THREAD_PATTERN, thread_id):
            return refused_file("no such conversation", 404)
        try:
            found = await uploads.download(thread_id, name)
        except UploadError as exc:
            return refused_file(str(exc), exc.status)
        return Response(
            found.data,
            content_type=found.content_type,
            headers={
                "Content-Disposition": found.disposition,
                "Cache-Control": "private, no-store",
            },
        )

    for extend in state.extensions:
        extend(app, check_request)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP
        return response

    return app


def served_origins(binds: Sequence[str], config: WebConfig) -> frozenset[str]:
    """The origins a page of this web chat may have: each address it listens on (a
    wildcard bind counts as loopback), `localhost` at the same port, and
    `web.allowed_origins` (a reverse proxy's public name, a LAN address)."""
    origins = set(config.allowed_origins)
    for bind in binds:
        scheme, _, address = bind.partition("://")
        host, _, port = address.rpartition(":")
        hosts = {host, "localhost"}
        if host in ("0.0.0.0", "[::]"):
            hosts = {"127.0.0.1", "[::1]", "localhost"}
        origins |= {f"{scheme}://{name}:{port}" for name in hosts}
    return frozenset(origins)


def web_child(
    config: Config,
    state: WebState,
    backend: LibraryBackend,
    library: Library,
    redactor: Redactor,
    router: DeliveryRouter,
    files: FileInbox | None = None,
) -> ChildSpec[Outbound]:
    """The web chat as the root supervisor runs it (see the module docstring); `state`
    outlives its incarnations and is what the daemon's tree may read of it (its binds).

    Error handling: a token file that is not usable (planted as a link) is a
    `StartupError` naming the file to remove.
    """

    async def serve(
        inbox: Inbox[Outbound], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            token = await trio.to_thread.run_sync(
                load_or_create_token, config.data_dir, config.web.token
            )
        except SafePathError as exc:
            raise StartupError(
                f"the web token file is not usable ({exc}); remove "
                f"{config.data_dir / WEB_TOKEN_FILE} and start again"
            ) from None
        redactor.add(token)
        await serve_web(
            config.web,
            config.shutdown.grace_seconds,
            state,
            backend,
            library,
            token,
            inbox,
            files=files,
            task_status=task_status,
        )

    return interface_child("web", serve, router)


def _bind(config: WebConfig) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{host}:{config.port}"


async def serve_web(
    config: WebConfig,
    graceful_seconds: float,
    state: WebState,
    backend: LibraryBackend,
    library: Library,
    token: str,
    inbox: Inbox[Outbound],
    *,
    files: FileInbox | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web chat until the mailbox is closed, then drain; files go to and come
    from `files` (None: the chat takes none)."""
    hypercorn_config = HypercornConfig()
    hypercorn_config.bind = [_bind(config)]
    # Sessions are closed by us at once on shutdown; what is left is idle keep-alive HTTP
    # connections, which must not eat the grace period the conversations need.
    hypercorn_config.graceful_timeout = min(graceful_seconds, WEB_DRAIN_SECONDS)
    hypercorn_config.accesslog = None
    hypercorn_config.errorlog = logging.getLogger("hypercorn.error")
    hypercorn_config.websocket_max_message_size = config.max_message_bytes * 4
    hub = Hub()
    uploads = Uploads(files, config.max_upload_bytes) if files is not None else None
    app = create_app(state, backend, library, hub, token, config, uploads)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        state.binds = await start_hypercorn(
            nursery, app, hypercorn_config, stop, "the web chat", "web.host/web.port"
        )
        state.origins = served_origins(state.binds, config)
        state.hosts = frozenset(origin.split("://", 1)[1] for origin in state.origins)
        state.ready = True
        for bind in state.binds:
            log.info("web chat listening on %s", bind)
        _announce(_browser_url(state.binds[0]), token if config.token is None else None)
        task_status.started()
        marks = _DeliveryMarks(backend)
        nursery.start_soon(marks.serve)
        # Publishing never waits (a slow socket is closed), and the synced outbox writes
        # happen beside this loop: no thread ever waits on the web interface's mailbox.
        async for event in inbox:
            if isinstance(event, ThreadRetitled):
                # As a rename does: every tab's list shows it, whatever tab follows it.
                hub.broadcast(event_frame(event))
                continue
            delivered = hub.publish(event)
            match event:
                case FinalReply(outbox_id=int(outbox_id)) | FileSent(outbox_id=outbox_id):
                    if delivered:
                        marks.add(outbox_id)
                case TurnStarted(source="reminder"):
                    # It is out of the archive now (the store's rule): every list shows it.
                    hub.broadcast(thread_changed_frame(event.thread_id, "active"))
        state.draining = True
        hub.close_all()
        stop.set()
        await marks.close()
        nursery.cancel_scope.deadline = trio.current_time() + hypercorn_config.graceful_timeout


async def start_hypercorn(
    nursery: trio.Nursery,
    app: QuartTrio,
    config: HypercornConfig,
    stop: trio.Event,
    what: str,
    option: str,
) -> list[str]:
    """Start hypercorn serving `app` in `nursery` until `stop` is set; the addresses it
    bound. Error handling: a socket it cannot bind (a busy port) is a `StartupError`
    naming `what` and the `option` to change."""
    try:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)
        )
    except (OSError, BaseExceptionGroup) as exc:
        error = unwrap_group(exc)
        if not isinstance(error, OSError):
            raise
        raise StartupError(
            f"{what} cannot listen on {config.bind[0]}: "
            f"{error.strerror or error} (change {option}, or stop what uses it)"
        ) from error
    return binds


class _DeliveryMarks:
    """Outbox ids delivered live, marked in the store in batches by a task of their own."""

    def __init__(self, backend: LibraryBackend) -> None:
        self._backend = backend
        self._pending: list[int] = []
        self._wake = trio.Event()
        self._scope = trio.CancelScope()

    def add(self, outbox_id: int) -> None:
        self._pending.append(outbox_id)
        self._wake.set()

    async def serve(self) -> None:
        with self._scope:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                await self._flush()

    async def close(self) -> None:
        """Stop the marking task, and mark what is left."""
        self._scope.cancel()
        await self._flush()

    async def _flush(self) -> None:
        # Shielded: a batch taken from the list is always written (only `close` cancels,
        # and it cancels the wait for more, never a write).
        batch, self._pending = self._pending, []
        if batch:
            with trio.CancelScope(shield=True):
                await self._backend.mark_delivered(batch)


def _announce(url: str, token: str | None) -> None:
    """The ready-to-open link, on the terminal only: log files are kept for weeks and
    read by other tools, and the token opens a shell on this machine. A token the owner
    configured is theirs already, so the link then goes without it."""
    if token is None:
        print(f"Ganglion: open the web chat at {url}/ (with web.token)", file=sys.stderr)
    else:
        print(f"Ganglion: open the web chat at {url}/#token={token}", file=sys.stderr)
    sys.stderr.flush()
    log.info("web chat ready at %s (the link with its token was printed on the terminal)", url)


def _browser_url(bind: str) -> str:
    return bind.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
