"""Errors of the model client; every one carries a short message safe to show in a chat.

LLMError                 base; `.user_message` is short and never holds raw server text
├── LLMUnavailable       connection errors, 5xx or 429 on every endpoint, after retries
├── LLMRequestRejected   a 4xx other than 429: the request itself was refused (not retried)
│   └── LLMContextExceeded the request does not fit the server's context window
├── LLMTimeout           no first token, or the whole attempt took too long, on every
│                        endpoint after retries
└── LLMStreamError       malformed SSE or JSON, a stream cut off without a finish reason
                         and without [DONE], or any failure after text reached `on_text`

`str(error)` is for the log: it may hold the endpoint, the HTTP status and a truncated
server message. `.user_message` is for the person in the chat: it never does.
"""

from __future__ import annotations

from ganglion.errors import GanglionError

__all__ = [
    "LLMContextExceeded",
    "LLMError",
    "LLMRequestRejected",
    "LLMStreamError",
    "LLMTimeout",
    "LLMUnavailable",
]

DETAIL_LIMIT = 300


class LLMError(GanglionError):
    """Base of the model client's errors."""

    user_text = "The model could not answer."

    @property
    def user_message(self) -> str:
        """A short sentence for the chat; no server text, no traceback."""
        return self.user_text


class LLMUnavailable(LLMError):
    """No endpoint answered: connection errors, 5xx or 429, after all retries.

    `status` is the last HTTP status seen (None when the last failure was the network).
    """

    user_text = (
        "The model server is not reachable or keeps failing right now. Please try again later."
    )

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def user_message(self) -> str:
        if self.status == 429:
            return "The model server is rate-limiting requests. Please try again in a while."
        return self.user_text


class LLMRequestRejected(LLMError):
    """The server refused the request with a 4xx other than 429; retrying would not help.

    `status` is the HTTP status, `detail` the server's message cut to a few hundred
    characters (for the log only).
    """

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail[:DETAIL_LIMIT]
        super().__init__(f"HTTP {status}: {self.detail}")

    @property
    def user_message(self) -> str:
        return f"The model server refused the request (HTTP {self.status}); see the daemon's log."


class LLMContextExceeded(LLMRequestRejected):
    """The server refused the request because it does not fit its context window.

    `limit` is the window the server stated (None when it did not say), `prompt_tokens`
    the request's size it stated; `window` is the limit the client works with from now
    on (it learned from this refusal).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        limit: int | None,
        prompt_tokens: int | None,
        window: int | None = None,
    ) -> None:
        super().__init__(status, detail)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.window = window

    @property
    def user_message(self) -> str:
        size = f" ({self.prompt_tokens:,} tokens)" if self.prompt_tokens else ""
        limit = self.limit or self.window
        window = f" of {limit:,} tokens" if limit else ""
        return (
            f"The request{size} did not fit the model server's context window{window}. "
            "Try /compact or /new, or raise the server's context size."
        )


class LLMTimeout(LLMError):
    """The model did not start, or did not finish, in time (see `LLMTimeouts`)."""

    user_text = "The model took too long to answer. Please try again."


class LLMStreamError(LLMError):
    """The streamed answer was garbled, cut off, or failed after text had been shown."""

    user_text = "The model's answer was cut off or garbled. Please try again."
