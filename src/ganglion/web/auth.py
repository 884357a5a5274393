"""The web chat's access token.

The token is generated on first start (256 bits from `secrets`) and kept in
`data_dir/web_token` with 0600 permissions, unless one is configured (`web.token` or
`GANGLION_WEB_TOKEN`). A browser presents it once in the URL (`/?token=…`, like
Jupyter); the server answers with an HttpOnly, SameSite=Strict cookie and a redirect that
removes it from the address bar. Non-browser clients (`ganglion chat`) send it as a
Bearer header. Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from ganglion.datadir import WEB_TOKEN_FILE

__all__ = ["COOKIE_NAME", "TOKEN_FILE", "load_or_create_token", "read_token", "token_matches"]

COOKIE_NAME = "ganglion_token"
TOKEN_FILE = WEB_TOKEN_FILE


def load_or_create_token(data_dir: Path, configured: SecretStr | None) -> str:
    """The token to require: the configured one, else the stored one, else a new one."""
    if configured is not None:
        return configured.get_secret_value()
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def read_token(data_dir: Path) -> str | None:
    """The stored token, for local clients (`ganglion chat`); None if there is none."""
    try:
        return (data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def token_matches(presented: str | None, expected: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
