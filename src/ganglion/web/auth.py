"""The web chat's access token.

The token is generated on first start (256 bits from `secrets`) and kept in
`data_dir/web_token` with 0600 permissions, unless one is configured (`web.token` or
`GANGLION_WEB_TOKEN`). Comparisons are constant-time.

Where the token travels, and why:

- The printed link carries it in the URL's fragment (`/#token=…`), which browsers never
  send to any server. The page keeps it in `localStorage`, which belongs to one origin
  (scheme, host *and port*), and presents it in the websocket's first frame. No cookie
  holds it: cookies ignore the port, so a server another local user runs on any
  loopback port would receive one whenever the owner's browser visits it. A cookie left
  by an older version is deleted on every page load.
- Non-browser clients (`ganglion chat`, `ganglion status`, a Prometheus scrape) send it
  as an `Authorization: Bearer` header, and the client commands only after checking that
  the socket they reach is the owner's (`ganglion.peercheck`).

No lockout: a 256-bit token cannot be guessed, so nothing is counted per address (every
local client is 127.0.0.1, and counting would let another local user lock the owner
out). A request without a token is refused at once; a wrong token costs that request
`WRONG_TOKEN_DELAY` seconds and nothing else; the right token is always served.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ganglion.datadir import WEB_TOKEN_FILE
from ganglion.private import load_or_create_secret, read_secret
from ganglion.safefs import SafePathError

if TYPE_CHECKING:  # the client commands read the token here without pydantic
    from pydantic import SecretStr

__all__ = [
    "LEGACY_COOKIE",
    "TOKEN_FILE",
    "WRONG_TOKEN_DELAY",
    "bearer_token",
    "load_or_create_token",
    "read_token",
    "refuse_wrong_token",
    "token_matches",
]

# The cookie earlier versions kept the token in; deleted wherever a page is served.
LEGACY_COOKIE = "ganglion_token"
TOKEN_FILE = WEB_TOKEN_FILE
WRONG_TOKEN_DELAY = 0.25


def load_or_create_token(data_dir: Path, configured: SecretStr | None) -> str:
    """The token to require: the configured one, else the stored one, else a new one
    (`private.load_or_create_secret`: a planted link or hard link is refused, so start-up
    fails rather than accept a token chosen by someone else)."""
    value = configured.get_secret_value() if configured is not None else None
    return load_or_create_secret(data_dir, TOKEN_FILE, value)


def read_token(data_dir: Path) -> str | None:
    """The stored token, for local clients (`ganglion chat`); None if there is none."""
    try:
        return read_secret(data_dir, TOKEN_FILE)
    except SafePathError:
        return None


def token_matches(presented: str | None, expected: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, else None."""
    if authorization and authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip() or None
    return None


async def refuse_wrong_token() -> None:
    """The cost of a wrong token: this request waits, nothing else is affected."""
    await trio.sleep(WRONG_TOKEN_DELAY)
