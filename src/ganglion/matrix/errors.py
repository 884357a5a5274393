"""What can go wrong between Ganglion and a homeserver, as our own exceptions.

nio returns `*Error` response objects and httpx raises its own errors; both are turned
into these at the boundary (`ganglion.matrix.http`), so the rest of the interface
handles one small tree:

    MatrixError                 something went wrong talking to the homeserver
    ├── MatrixUnavailable       not reachable, timed out, or a 5xx: retry with backoff
    ├── MatrixRequestError      the homeserver refused a request (`errcode`, `status`)
    │   ├── MatrixAuthError     the access token is unknown, expired or logged out
    │   └── MatrixInteractiveAuth  the request needs user-interactive auth (password)
    ├── MatrixMediaTooLarge     a download that is (or grew) larger than its cap
    ├── MediaError              media that cannot be had: a malformed event, a bad hash (media)
    └── MatrixSetupError        the configuration or the encryption store cannot work
        │                       as they are (wrong device id, store of another device)
        └── SecretStorageError  a recovery key or a stored secret that does not open

Every message is one line meant for the operator: what happened and what to do.
"""

from __future__ import annotations

from ganglion.errors import GanglionError

__all__ = [
    "MatrixAuthError",
    "MatrixError",
    "MatrixInteractiveAuth",
    "MatrixMediaTooLarge",
    "MatrixRequestError",
    "MatrixSetupError",
    "MatrixUnavailable",
    "SecretStorageError",
]


class MatrixError(GanglionError):
    """Base of the Matrix interface's errors."""


class MatrixUnavailable(MatrixError):
    """The homeserver could not be reached, timed out or failed (HTTP 5xx); transient."""


class MatrixRequestError(MatrixError):
    """The homeserver refused a request: `errcode` is Matrix's (`M_FORBIDDEN`, ...),
    `status` the HTTP status."""

    def __init__(self, message: str, *, errcode: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.status = status


class MatrixAuthError(MatrixRequestError):
    """The access token does not work (unknown, expired, soft-logged-out)."""


class MatrixInteractiveAuth(MatrixRequestError):
    """The homeserver wants user-interactive auth for this request (HTTP 401 with
    `flows`): `session` is what the retry must name, `flows` the stages it offers."""

    def __init__(
        self,
        message: str,
        *,
        session: str | None,
        flows: list[list[str]],
        errcode: str | None = None,
    ) -> None:
        super().__init__(message, errcode=errcode, status=401)
        self.session = session
        self.flows = flows


class MatrixMediaTooLarge(MatrixError):
    """Media larger than the cap it was downloaded under (`limit`, in bytes): stopped
    before the cap was passed."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MatrixSetupError(MatrixError):
    """The configuration or the encryption store cannot work as they are."""


class SecretStorageError(MatrixSetupError):
    """A recovery key that is not one, or not the key of the account's secret storage,
    or a stored secret that does not decrypt (wrong key, or changed on the server)."""
