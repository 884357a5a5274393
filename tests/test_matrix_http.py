"""The Matrix HTTP boundary against a mock transport: the token travels in a header,
rate limits are waited out, and every failure becomes one of our exceptions."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import nio
import pytest
import trio

from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixInteractiveAuth,
    MatrixRequestError,
    MatrixUnavailable,
)
from ganglion.matrix.http import RATE_LIMIT_RETRIES, Homeserver, endpoint_of

TOKEN = "syt_secret_token"
WHOAMI = {"user_id": "@bot:hs.example", "device_id": "BOTDEVICE"}

Handler = Callable[[httpx.Request], httpx.Response]


def homeserver(handler: Handler) -> Homeserver:
    client: Any = nio.Client("@bot:hs.example", "BOTDEVICE")
    client.user_id = "@bot:hs.example"
    client.access_token = TOKEN
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Homeserver(client, http, "https://hs.example/")


def answer(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


async def test_the_token_goes_in_a_header_never_in_the_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(200, WHOAMI)

    server = homeserver(handler)
    whoami = await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    assert whoami.user_id == "@bot:hs.example"
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.url)
    assert request.url.path == "/_matrix/client/v3/account/whoami"


async def test_trim_edits_a_good_answer_before_nio_parses_it_and_never_sees_a_refusal() -> None:
    seen: list[Any] = []

    def trim(parsed: Any) -> None:
        seen.append(dict(parsed))
        parsed["device_id"] = "TRIMMED"

    server = homeserver(lambda request: answer(200, WHOAMI))
    whoami = await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN), trim=trim)
    assert seen == [WHOAMI] and whoami.device_id == "TRIMMED"
    refusing = homeserver(lambda request: answer(403, {"errcode": "M_FORBIDDEN", "error": "no"}))
    with pytest.raises(MatrixRequestError):
        await refusing.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN), trim=trim)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/_matrix/client/v3/sync?since=s1&timeout=30000", "sync"),
        ("/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.encrypted/ganglion-7", "rooms/send"),
        ("/_matrix/client/v3/rooms/%21r%3Ahs/read_markers", "rooms/read_markers"),
        ("/_matrix/client/v3/rooms/%21r%3Ahs/typing/%40bot%3Ahs", "rooms/typing"),
        ("/_matrix/client/v3/rooms/%21r%3Ahs/event/%24e", "rooms/event"),
        ("/_matrix/client/v1/rooms/%21r%3Ahs/relations/%24e/m.replace", "rooms/relations"),
        ("/_matrix/client/v3/sendToDevice/m.room.encrypted/txn", "sendToDevice"),
        (
            "/_matrix/client/v3/user/%40bot%3Ahs/account_data/m.cross_signing.master",
            "user/account_data",
        ),
        ("/_matrix/client/v3/keys/device_signing/upload", "keys/device_signing/upload"),
        ("/_matrix/client/v3/join/%21r%3Ahs", "join"),
        ("/_matrix/client/v1/media/download/hs.example/abc", "media/download"),
        ("https://hs.example/_matrix/media/v3/upload?filename=a.png", "upload"),
    ],
)
def test_requests_are_counted_by_what_they_do_without_ids(path: str, endpoint: str) -> None:
    assert endpoint_of(path) == endpoint


async def test_each_request_is_counted_by_endpoint_in_the_counter_given() -> None:
    counted: Counter[str] = Counter()
    client: Any = nio.Client("@bot:hs.example", "BOTDEVICE")
    client.access_token = TOKEN
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: answer(200, WHOAMI)))
    server = Homeserver(client, http, "https://hs.example", counted)
    await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    await server.call("GET", "/_matrix/client/v3/account/whoami")
    assert counted == {"account/whoami": 2} and server.requests == 2


async def test_other_query_parameters_and_the_body_are_kept() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(200, {"event_id": "$e"})

    server = homeserver(handler)
    call = nio.Api.room_send(TOKEN, "!r:hs.example", "m.room.message", {"body": "hi"}, "txn-1")
    sent = await server.request(nio.RoomSendResponse, call, "!r:hs.example")
    assert sent.event_id == "$e"
    request = seen[0]
    assert request.method == "PUT"
    assert request.url.path.endswith("/send/m.room.message/txn-1")
    assert json.loads(request.content) == {"body": "hi"}
    assert request.headers["Content-Type"] == "application/json"


async def test_a_rate_limit_is_waited_out_as_the_server_asks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    replies = [
        answer(429, {"errcode": "M_LIMIT_EXCEEDED", "error": "slow", "retry_after_ms": 1500}),
        answer(200, WHOAMI),
    ]
    server = homeserver(lambda request: replies.pop(0))
    started = trio.current_time()
    await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    assert trio.current_time() - started == pytest.approx(1.5)
    assert server.rate_limited == 1


async def test_a_rate_limit_that_never_ends_is_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = answer(429, {"errcode": "M_LIMIT_EXCEEDED", "error": "slow", "retry_after_ms": 10})
    server = homeserver(lambda request: limited)
    with pytest.raises(MatrixRequestError) as caught:
        await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    assert caught.value.errcode == "M_LIMIT_EXCEEDED"
    assert server.requests == RATE_LIMIT_RETRIES + 1


async def test_an_unknown_token_is_an_auth_error_saying_what_to_do() -> None:
    refused = answer(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"})
    server = homeserver(lambda request: refused)
    with pytest.raises(MatrixAuthError) as caught:
        await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    assert caught.value.errcode == "M_UNKNOWN_TOKEN"
    assert "matrix.access_token" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_a_refusal_carries_the_matrix_errcode() -> None:
    refused = answer(403, {"errcode": "M_FORBIDDEN", "error": "not in room"})
    server = homeserver(lambda request: refused)
    call = nio.Api.room_send(TOKEN, "!r:hs.example", "m.room.message", {}, "t")
    with pytest.raises(MatrixRequestError) as caught:
        await server.request(nio.RoomSendResponse, call, "!r:hs.example")
    assert not isinstance(caught.value, MatrixAuthError)
    assert (caught.value.errcode, caught.value.status) == ("M_FORBIDDEN", 403)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_means_unavailable(status: int) -> None:
    server = homeserver(lambda request: httpx.Response(status, text="bad gateway"))
    with pytest.raises(MatrixUnavailable, match=f"HTTP {status}"):
        await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))


async def test_an_unreachable_homeserver_means_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server = homeserver(handler)
    with pytest.raises(MatrixUnavailable, match="cannot reach the homeserver"):
        await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))


async def test_an_answer_that_is_not_matrix_is_a_request_error() -> None:
    server = homeserver(lambda request: httpx.Response(200, text="<html>hello</html>"))
    with pytest.raises(MatrixRequestError):
        await server.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))
    malformed = homeserver(lambda request: answer(200, {"unexpected": True}))
    with pytest.raises(MatrixRequestError, match="could not be understood"):
        await malformed.request(nio.WhoamiResponse, nio.Api.whoami(TOKEN))


async def test_a_plain_call_sends_json_with_the_token_in_a_header_and_returns_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(200, {"failures": {}})

    server = homeserver(handler)
    body = {"@bot:hs.example": {"BOTDEVICE": {"device_id": "BOTDEVICE"}}}
    assert await server.call("POST", "/_matrix/client/v3/keys/signatures/upload", body) == {
        "failures": {}
    }
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == body


async def test_a_401_asking_for_interactive_auth_is_not_a_bad_token() -> None:
    asking = {"flows": [{"stages": ["m.login.password"]}], "session": "abc", "params": {}}
    server = homeserver(lambda request: answer(401, asking))
    with pytest.raises(MatrixInteractiveAuth) as raised:
        await server.call("POST", "/_matrix/client/v3/keys/device_signing/upload", {})
    assert (raised.value.session, raised.value.flows) == ("abc", [["m.login.password"]])
    assert not isinstance(raised.value, MatrixAuthError)
    unknown = homeserver(lambda request: answer(401, {"errcode": "M_UNKNOWN_TOKEN"}))
    with pytest.raises(MatrixAuthError):
        await unknown.call("GET", "/_matrix/client/v3/account/whoami")
