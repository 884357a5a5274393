"""A loopback HTTP proxy in front of the test Synapse, for the moments no client reaches
by itself: it records what the daemon asks of its homeserver, and can hold back the
answer to a request the homeserver has already carried out.

    async with open_homeserver_proxy(synapse.base_url) as proxy:
        # matrix.homeserver: proxy.base_url
        proxy.after_accepted(is_reply_send, then=live.kill)
        ...
        proxy.requests_to("/sendToDevice/m.room_key_request/")

Every request goes to Synapse as it came (method, path and query, body, the
Authorization and Content-Type headers) and its answer comes back as Synapse gave it,
unless `after_accepted` matched it: then, once Synapse answered it with a success, `then`
is called and the connection is closed without an answer, as a daemon killed at that
instant would never have read it. A Synapse that cannot be reached is a 502.

Resource handling: the server and its client to Synapse live as long as the block;
leaving it closes every connection (long-poll syncs in flight included).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

import h11
import httpx
import trio

from tests.support.fakellm import _Connection as HttpConnection

__all__ = ["HomeserverProxy", "Seen", "open_homeserver_proxy"]

FORWARDED_HEADERS = frozenset({b"authorization", b"content-type"})


@dataclass(frozen=True, slots=True)
class Seen:
    """A request the proxy passed on: its method, its path (decoded, no query), its body
    and the status Synapse answered it with."""

    method: str
    path: str
    body: bytes
    status: int


class HomeserverProxy:
    """See the module docstring. Made by `open_homeserver_proxy`."""

    def __init__(self, upstream: httpx.AsyncClient) -> None:
        self._upstream = upstream
        self.base_url = ""
        self.seen: list[Seen] = []
        self._hold: tuple[Callable[[Seen], bool], Callable[[], object]] | None = None

    def after_accepted(self, matches: Callable[[Seen], bool], then: Callable[[], object]) -> None:
        """For the next request that `matches` and that Synapse carries out (2xx): call
        `then()`, and never answer it."""
        self._hold = (matches, then)

    def requests_to(self, fragment: str) -> list[Seen]:
        """The requests passed on so far whose path contains `fragment`."""
        return [seen for seen in self.seen if fragment in seen.path]

    async def handle(self, stream: trio.SocketStream) -> None:
        http = HttpConnection(stream)
        try:
            while (request := await http.receive_request()) is not None:
                if not await self._forward(http, *request):
                    return
                if not http.next_cycle():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _forward(self, http: HttpConnection, request: h11.Request, body: bytes) -> bool:
        """Pass `request` on and its answer back; False when the answer is held back."""
        headers = [(k, v) for k, v in request.headers if k.lower() in FORWARDED_HEADERS]
        target = request.target.decode()
        try:
            answer = await self._upstream.request(
                request.method.decode(), target, headers=headers, content=body
            )
        except httpx.TransportError:
            await http.send_json(502, {"errcode": "M_UNKNOWN", "error": "Synapse is away"})
            return True
        seen = Seen(
            request.method.decode(), unquote(target.split("?")[0]), body, answer.status_code
        )
        self.seen.append(seen)
        hold = self._hold
        if hold is not None and 200 <= answer.status_code < 300 and hold[0](seen):
            self._hold = None
            hold[1]()
            return False
        content_type = answer.headers.get("content-type", "application/json")
        await http.send_body(answer.status_code, content_type, answer.content)
        return True


@asynccontextmanager
async def open_homeserver_proxy(upstream: str) -> AsyncIterator[HomeserverProxy]:
    """A `HomeserverProxy` to `upstream` on 127.0.0.1 (a free port) for the block."""
    async with (
        httpx.AsyncClient(base_url=upstream, timeout=None) as client,
        trio.open_nursery() as nursery,
    ):
        proxy = HomeserverProxy(client)
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
        proxy.base_url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        yield proxy
        nursery.cancel_scope.cancel()
