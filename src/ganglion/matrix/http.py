"""The HTTP boundary: nio's sans-IO request builders and parsers, httpx on Trio.

    homeserver = Homeserver(client, http)       # a nio.Client holding the token
    whoami = await homeserver.request(nio.WhoamiResponse, nio.Api.whoami(client.access_token))

One request: `nio.Api.x(...)` builds it (method, path, JSON body); the access token that
nio puts in the query string moves into an `Authorization: Bearer` header (query strings
end up in proxy logs); httpx sends it; a 2xx answer becomes nio's response class through
`from_dict`, and `client.receive_response` updates nio's state (rooms, the Olm machine,
Megolm events decrypted in place). Nothing here runs on asyncio: cancellation is Trio's
all the way down.

Error handling: a transport error, a timeout or a 5xx raises `MatrixUnavailable`; a 429
(or `M_LIMIT_EXCEEDED`) is waited out, honouring `retry_after_ms` (or `Retry-After`), up
to `RATE_LIMIT_RETRIES` times; any other refusal raises `MatrixRequestError` with the
Matrix errcode (`MatrixAuthError` for a token that does not work,
`MatrixInteractiveAuth` for a 401 that asks for the password instead); a 2xx answer
nio cannot parse raises `MatrixRequestError` too (errcode None).

Requests nio has no builder for (cross-signing, account data) go through `call`, with
the same header, rate-limit waits and errors, and come back as plain JSON. Media goes
through `download` (authenticated media, streamed under a size cap) and `upload`.

Resource handling: the httpx client belongs to the caller, who closes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import nio
import trio

from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixInteractiveAuth,
    MatrixMediaTooLarge,
    MatrixRequestError,
    MatrixUnavailable,
)

__all__ = ["REQUEST_TIMEOUT", "SYNC_MARGIN", "Homeserver", "endpoint_of"]

log = logging.getLogger(__name__)

R = TypeVar("R")

REQUEST_TIMEOUT: Final = 30.0
# A long-poll sync holds the request open for its `timeout`; the HTTP timeout must be
# longer, or every quiet sync would end as an error.
SYNC_MARGIN: Final = 30.0
RATE_LIMIT_RETRIES: Final = 5
DEFAULT_RETRY_AFTER: Final = 5.0
MAX_RETRY_AFTER: Final = 300.0
AUTH_ERRCODES: Final = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


class Homeserver:
    """Requests to one homeserver on behalf of one logged-in nio client."""

    def __init__(
        self,
        client: Any,
        http: httpx.AsyncClient,
        base_url: str,
        requests: Counter[str] | None = None,
    ) -> None:
        self.client = client
        self._http = http
        self._base_url = base_url.rstrip("/")
        self.requests = 0
        # Requests sent, by `endpoint_of` (given: counted there too, e.g. across
        # reconnections in the interface's statistics).
        self.by_endpoint: Counter[str] = requests if requests is not None else Counter()
        self.rate_limited = 0

    async def request(
        self,
        response_class: type[R],
        call: tuple[str, ...],
        *response_data: Any,
        read_timeout: float = REQUEST_TIMEOUT,
        trim: Callable[[Any], None] | None = None,
    ) -> R:
        """Send `call` (what an `nio.Api` builder returned) and return the parsed answer,
        already received by the nio client. `read_timeout` is the HTTP client's: a
        long-poll sync needs more than its own poll time. `trim`, when given, may take
        out of a 2xx answer's JSON (in place) what the caller will not read, before nio
        validates, parses and decrypts it; it must accept any JSON value. See the module
        docstring for errors."""
        method, path, *body = call
        reply, parsed = await self._exchange(method, path, body[0] if body else None, read_timeout)
        if trim is not None and reply.is_success:
            trim(parsed)
        return self._parse(response_class, reply, parsed, response_data, path)

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a request nio has no builder for (cross-signing, account data): `path`
        under `/_matrix/client/`, `body` as JSON; return the JSON answer as it came.
        Errors as for `request`; a 401 that asks for user-interactive auth raises
        `MatrixInteractiveAuth` with its session and flows."""
        content = json.dumps(body) if body is not None else None
        reply, parsed = await self._exchange(method, path, content, REQUEST_TIMEOUT)
        what = _describe_path(path)
        if reply.status_code >= 500:
            raise MatrixUnavailable(f"{what}: the homeserver failed (HTTP {reply.status_code})")
        if reply.status_code >= 400 or not isinstance(parsed, dict):
            raise _refusal(what, reply.status_code, parsed)
        return parsed

    async def _exchange(
        self, method: str, path: str, content: str | None, read_timeout: float
    ) -> tuple[httpx.Response, Any]:
        url, headers = self._url(path), {"Authorization": f"Bearer {self.client.access_token}"}
        data = content.encode() if content is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            reply = await self._send(method, url, headers, data, read_timeout)
            parsed = _json(reply)
            errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
            if (reply.status_code == 429 or errcode == "M_LIMIT_EXCEEDED") and (
                attempt < RATE_LIMIT_RETRIES
            ):
                wait = _retry_after(reply, parsed)
                self.rate_limited += 1
                log.warning("rate limited by the homeserver: waiting %.1f s", wait)
                await trio.sleep(wait)
                continue
            return reply, parsed
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        read_timeout: float,
    ) -> httpx.Response:
        self.requests += 1
        self.by_endpoint[endpoint_of(url)] += 1
        try:
            return await self._http.request(
                method, url, headers=headers, content=content, timeout=read_timeout
            )
        except httpx.TimeoutException:
            raise MatrixUnavailable(
                f"the homeserver {self._base_url} did not answer within {read_timeout:.0f} s"
            ) from None
        except httpx.TransportError as exc:
            raise MatrixUnavailable(
                f"cannot reach the homeserver {self._base_url}: {exc or type(exc).__name__} "
                "(check matrix.homeserver and the network)"
            ) from None

    def _parse(
        self,
        response_class: type[R],
        reply: httpx.Response,
        parsed: Any,
        response_data: tuple[Any, ...],
        path: str,
    ) -> R:
        what = _describe_path(path)
        if reply.status_code >= 500:
            raise MatrixUnavailable(f"{what}: the homeserver failed (HTTP {reply.status_code})")
        if reply.status_code >= 400 or not isinstance(parsed, dict):
            raise _refusal(what, reply.status_code, parsed)
        response = response_class.from_dict(parsed, *response_data)  # type: ignore[attr-defined]
        if isinstance(response, nio.ErrorResponse):
            raise MatrixRequestError(
                f"{what}: the homeserver's answer could not be understood ({response.message})",
                status=reply.status_code,
            )
        self.client.receive_response(response)
        return response  # type: ignore[no-any-return]

    async def download(self, server: str, media_id: str, *, limit: int) -> bytes:
        """The bytes of `mxc://server/media_id`, from authenticated media (Matrix 1.11),
        or from the old unauthenticated path when the server does not know the new one.
        Streamed: `MatrixMediaTooLarge` as soon as more than `limit` bytes are announced
        or arrive. Other errors as for `call`."""
        where = f"{quote(server, safe='')}/{quote(media_id, safe='')}"
        for path in (
            f"/_matrix/client/v1/media/download/{where}",
            f"/_matrix/media/v3/download/{where}",
        ):
            found = await self._stream(path, limit)
            if found is not None:
                return found
        raise MatrixRequestError(
            f"media download: the homeserver has no media mxc://{server}/{media_id}", status=404
        )

    async def upload(self, data: bytes, content_type: str, filename: str) -> str:
        """Upload `data`; the `mxc://` URI the homeserver gave it."""
        path = f"/_matrix/media/v3/upload?{urlencode({'filename': filename})}"
        headers = {
            "Authorization": f"Bearer {self.client.access_token}",
            "Content-Type": content_type,
        }
        reply = await self._send("POST", self._url(path), headers, data, REQUEST_TIMEOUT)
        parsed = _json(reply)
        if reply.status_code >= 500:
            raise MatrixUnavailable(
                f"media upload: the homeserver failed (HTTP {reply.status_code})"
            )
        uri = parsed.get("content_uri") if isinstance(parsed, dict) else None
        if reply.status_code >= 400 or not isinstance(uri, str):
            raise _refusal("media upload", reply.status_code, parsed)
        return uri

    async def _stream(self, path: str, limit: int) -> bytes | None:
        """One download attempt: the bytes, or None when the server does not know `path`
        (a 404 or `M_UNRECOGNIZED` before any media answer: try the older path)."""
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        self.requests += 1
        self.by_endpoint[endpoint_of(path)] += 1
        try:
            async with self._http.stream("GET", self._url(path), headers=headers) as reply:
                if reply.status_code >= 400:
                    parsed = _json_of(await reply.aread())
                    errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
                    if "/v1/media/" in path and (
                        errcode == "M_UNRECOGNIZED"
                        or (reply.status_code == 404 and errcode != "M_NOT_FOUND")
                    ):
                        return None
                    if reply.status_code >= 500:
                        raise MatrixUnavailable(
                            f"media download: the homeserver failed (HTTP {reply.status_code})"
                        )
                    raise _refusal("media download", reply.status_code, parsed)
                announced = reply.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > limit:
                    raise _too_large(int(announced), limit)
                chunks: list[bytes] = []
                size = 0
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, limit)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise MatrixUnavailable(
                f"the homeserver {self._base_url} did not send the media in time"
            ) from None
        except httpx.TransportError as exc:
            raise MatrixUnavailable(
                f"cannot reach the homeserver {self._base_url}: {exc or type(exc).__name__}"
            ) from None

    def _url(self, path: str) -> str:
        parts = urlsplit(path)
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "access_token"
        ]
        return self._base_url + urlunsplit(("", "", parts.path, urlencode(query), ""))


def _json(reply: httpx.Response) -> Any:
    return _json_of(reply.content)


def _json_of(content: bytes) -> Any:
    try:
        return json.loads(content) if content else {}
    except ValueError:
        return None


def _too_large(size: int, limit: int) -> MatrixMediaTooLarge:
    return MatrixMediaTooLarge(
        f"the media is larger ({size} bytes or more) than matrix.max_media_bytes ({limit})",
        limit=limit,
    )


def _retry_after(reply: httpx.Response, parsed: Any) -> float:
    seconds: float = DEFAULT_RETRY_AFTER
    if isinstance(parsed, dict) and isinstance(parsed.get("retry_after_ms"), int | float):
        seconds = parsed["retry_after_ms"] / 1000
    else:
        with contextlib.suppress(ValueError):
            seconds = float(reply.headers.get("Retry-After", ""))
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _refusal(what: str, status: int, parsed: Any) -> MatrixRequestError:
    errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
    message = parsed.get("error") if isinstance(parsed, dict) else None
    text = f"{what}: {errcode or f'HTTP {status}'}: {message or 'no explanation given'}"
    if status == 401 and isinstance(parsed, dict) and "flows" in parsed:
        flows = [list(f.get("stages", [])) for f in parsed["flows"] if isinstance(f, dict)]
        session = parsed.get("session")
        return MatrixInteractiveAuth(
            f"{what}: the homeserver asks for user-interactive auth "
            f"({', '.join('+'.join(f) for f in flows) or 'no flows offered'})",
            session=session if isinstance(session, str) else None,
            flows=flows,
            errcode=errcode,
        )
    if errcode in AUTH_ERRCODES or status == 401:
        return MatrixAuthError(
            f"{text} (the access token does not work: it is wrong, expired or was logged "
            "out; put a valid one in matrix.access_token or GANGLION_MATRIX_ACCESS_TOKEN)",
            errcode=errcode,
            status=status,
        )
    return MatrixRequestError(text, errcode=errcode, status=status)


# The path segment that names what a request does; what follows it is ids and types.
_ACTIONS: Final = frozenset(
    {"send", "sendToDevice", "redact", "account_data", "download", "event", "relations"}
    | {"state", "typing", "receipt", "join", "leave", "invite", "read_markers", "context"}
)
_VERSIONS: Final = frozenset({"r0", "v1", "v3", "unstable"})


def endpoint_of(path: str) -> str:
    """What a request to `path` (or a URL) does, without its ids, e.g. "sync",
    "rooms/send", "keys/query", "user/account_data", "media/download": few enough
    names to count requests by."""
    parts = [part for part in urlsplit(path).path.split("/") if part]
    if parts[:1] == ["_matrix"]:
        parts = parts[2:]  # "_matrix", then "client" or "media"
    if parts[:1] and parts[0] in _VERSIONS:
        parts = parts[1:]
    kept: list[str] = []
    for part in parts:
        if part[0] in "!@$%":
            continue
        kept.append(part)
        if part in _ACTIONS:
            break
    return "/".join(kept) or "/"


def _describe_path(path: str) -> str:
    """A short name for a request, for messages: its path without the query or ids."""
    endpoint = urlsplit(path).path.removeprefix("/_matrix/client/")
    return " ".join(part for part in endpoint.split("/") if part and part[0] not in "!%@$")
