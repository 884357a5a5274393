"""An httpx client that keeps no cookies, for the APIs Ganglion calls as a client.

    async with CookielessClient(timeout=30.0) as http:
        await http.get(url, headers={"Authorization": f"Bearer {token}"})

The Matrix client-server API and OpenAI-compatible model servers authenticate with a
bearer token; no cookie they set (a load balancer's, a CDN's) is needed by the next
request. httpx's own client puts every answer through urllib's cookie jar and merges
the jar into every request: about a tenth of a millisecond a request on a small VM,
with several requests per Matrix message. This client's jar is always empty: a
`Set-Cookie` is dropped, and no `Cookie` header is sent unless a request names one.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["CookielessClient"]


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing of `response`."""


class CookielessClient(httpx.AsyncClient):
    """`httpx.AsyncClient` with an empty cookie jar that stays empty."""

    _jar = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("a CookielessClient keeps no cookies")
