"""The cookieless HTTP client: a `Set-Cookie` is dropped and no `Cookie` is sent."""

from __future__ import annotations

import httpx
import pytest

from ganglion.cookieless import CookielessClient


async def test_a_cookie_set_by_the_server_is_never_sent_back() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"}, json={})

    async with CookielessClient(transport=httpx.MockTransport(handler)) as http:
        await http.get("https://hs.example/a")
        await http.get("https://hs.example/b")
        assert not http.cookies
        with pytest.raises(TypeError):
            http.cookies = {"session": "abc"}
    assert [request.headers.get("Cookie") for request in seen] == [None, None]


async def test_a_cookie_a_request_names_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with CookielessClient(transport=httpx.MockTransport(handler)) as http:
        await http.send(http.build_request("GET", "https://hs.example/", headers={"Cookie": "a=1"}))
    assert seen[0].headers["Cookie"] == "a=1"
