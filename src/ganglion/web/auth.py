"""The web chat's access token.

The token is generated on first start (256 bits from `secrets`) and kept in
`data_dir/web_token` with 0600 permissions, unless one is configured (`web.token` or
`GANGLION_WEB_TOKEN`). A browser presents it once in the URL (`/?token=…`, like
Jupyter); the server answers with an HttpOnly, SameSite=Strict cookie and a redirect that
removes it from the address bar. Non-browser clients (`ganglion chat`) send it as a
Bearer header. Comparisons are constant-time.

Wrong tokens are throttled per client address (`FailureThrottle`): after a burst of
failures an address is refused, right token or not, until its budget refills, so the
token cannot be guessed at the speed of the network.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ganglion.datadir import WEB_TOKEN_FILE
from ganglion.private import load_or_create_secret, read_secret
from ganglion.safefs import SafePathError

if TYPE_CHECKING:  # the client commands read the token here without pydantic
    from pydantic import SecretStr

__all__ = [
    "COOKIE_NAME",
    "TOKEN_FILE",
    "FailureThrottle",
    "load_or_create_token",
    "read_token",
    "token_matches",
]

COOKIE_NAME = "ganglion_token"
TOKEN_FILE = WEB_TOKEN_FILE


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


class FailureThrottle:
    """Failed token attempts per client address: `burst` at once, then `per_minute`.

    Addresses are forgotten oldest first beyond `max_addresses`, so memory stays bounded
    whoever knocks.
    """

    def __init__(self, burst: int = 10, per_minute: float = 10.0, max_addresses: int = 4096):
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_addresses = max_addresses
        self._spent: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, address: str) -> float:
        """How many failures the address has outstanding now (leaking at `rate`)."""
        spent, at = self._spent.get(address, (0.0, 0.0))
        return max(0.0, spent - (trio.current_time() - at) * self.rate)

    def blocked(self, address: str) -> bool:
        """Whether one more failure would exceed the budget: refuse the attempt."""
        return self._level(address) > self.burst - 1

    def failed(self, address: str) -> None:
        self._spent[address] = (self._level(address) + 1, trio.current_time())
        self._spent.move_to_end(address)
        while len(self._spent) > self.max_addresses:
            self._spent.popitem(last=False)
