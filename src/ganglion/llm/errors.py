"""Errors of the model client; every one carries a one-line message the owner can act on.

LLMError                 base; `.user_message` names the endpoint and the cause, never a
│                        secret or raw server text; `.kind` is a short label for metrics
├── LLMUnavailable       connection errors, 5xx or 429 on every endpoint, after retries
├── LLMRequestRejected   a 4xx other than 429: the request itself was refused (not retried)
│   ├── LLMContextExceeded the request does not fit the server's context window
│   └── LLMImagesRefused   the server does not take image parts (a model without vision)
├── LLMTimeout           no first token, or the whole attempt took too long, on every
│                        endpoint after retries
└── LLMStreamError       malformed SSE or JSON, a stream cut off without a finish reason
                         and without [DONE], or any failure after text reached `on_text`

`str(error)` is for the log: it may hold the endpoint, the HTTP status and a truncated
server message. `.user_message` is for the person in the chat: only the owner talks to
Ganglion, so it names the endpoint (`shown_url`: no credentials, no query string), the
model and what to do, and never the server's own text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Self

import httpx

from ganglion.errors import GanglionError

__all__ = [
    "IMAGE_REFUSAL_PATTERNS",
    "LLMContextExceeded",
    "LLMError",
    "LLMImagesRefused",
    "LLMRequestRejected",
    "LLMStreamError",
    "LLMTimeout",
    "LLMUnavailable",
    "refuses_images",
    "shown_url",
]

DETAIL_LIMIT = 300
# How many of the server's models a "model not found" message lists.
MODELS_SHOWN = 8


def shown_url(url: str) -> str:
    """`url` as it may be shown to people: without user, password, query or fragment."""
    try:
        parsed = httpx.URL(url)
        return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the configured URL"


class LLMError(GanglionError):
    """Base of the model client's errors.

    `endpoint` and `model` are set by the client (`at`) once it knows which endpoint
    failed; the message for people names them.
    """

    user_text = "The model could not answer."
    endpoint: str | None = None
    model: str | None = None

    @property
    def kind(self) -> str:
        """A short label of the cause, for metrics and `ganglion status`."""
        return "error"

    def at(self, endpoint: str, model: str) -> Self:
        """Record which endpoint (base URL) and model failed; returns self."""
        self.endpoint, self.model = endpoint, model
        return self

    @property
    def server(self) -> str:
        """ "the model server at URL" (or without the URL when it is not known)."""
        if self.endpoint is None:
            return "the model server"
        return f"the model server at {shown_url(self.endpoint)}"

    @property
    def user_message(self) -> str:
        """One line for the chat: the endpoint, the cause, what to do; no server text."""
        return self.user_text


class LLMUnavailable(LLMError):
    """No endpoint answered: connection errors, 5xx or 429, after all retries.

    `status` is the last HTTP status seen (None when the last failure was the network);
    `cause` a short phrase for a network failure ("connection refused").
    """

    user_text = "The model server is not reachable. Is it running?"

    def __init__(self, message: str, *, status: int | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause

    @property
    def kind(self) -> str:
        if self.status is None:
            return "unreachable"
        return "rate_limited" if self.status == 429 else "server_error"

    @property
    def user_message(self) -> str:
        server = self.server[0].upper() + self.server[1:]
        if self.status == 429:
            return f"{server} is rate-limiting requests (HTTP 429). Please try again in a while."
        if self.status is not None:
            return (
                f"{server} answered with an error (HTTP {self.status}); see the model server's log."
            )
        if self.endpoint is None:
            return self.user_text
        cause = self.cause or "the connection failed"
        return f"Cannot reach {self.server}: {cause}. Is the server running?"


class LLMRequestRejected(LLMError):
    """The server refused the request with a 4xx other than 429; retrying would not help.

    `status` is the HTTP status, `detail` the server's message cut to a few hundred
    characters (for the log only). `available` is, after a 404, the models the server
    says it has (None when it could not say).
    """

    available: tuple[str, ...] | None = None

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail[:DETAIL_LIMIT]
        super().__init__(f"HTTP {status}: {self.detail}")

    @property
    def kind(self) -> str:
        if self.status in (401, 403):
            return "auth"
        return "model_not_found" if self.status == 404 else "rejected"

    def with_models(self, models: Sequence[str] | None) -> Self:
        self.available = None if models is None else tuple(models)
        return self

    @property
    def user_message(self) -> str:
        server = self.server[0].upper() + self.server[1:]
        status = self.status
        if status == 401:
            return f"{server} refused the API key (HTTP 401); check llm.api_key."
        if status == 403:
            return f"{server} refused access (HTTP 403); check llm.api_key and its permissions."
        if status == 404:
            return self._not_found(server)
        return f"{server} refused the request (HTTP {status}); see the daemon's log."

    def _not_found(self, server: str) -> str:
        model = f'"{self.model}"' if self.model else "the model"
        if self.available is None:
            return (
                f"{server} answered 404 for model {model}; check llm.model, and that "
                "llm.base_url is the API's root (it usually ends in /v1)."
            )
        if self.model is not None and self.model in self.available:
            return f"{server} answered 404 for model {model}; see the daemon's log."
        if not self.available:
            return f"{server} has no model {model} (HTTP 404), and lists no models at all."
        names = ", ".join(self.available[:MODELS_SHOWN])
        more = (
            f" and {len(self.available) - MODELS_SHOWN} more"
            if len(self.available) > MODELS_SHOWN
            else ""
        )
        return f"{server} has no model {model} (HTTP 404); it has: {names}{more}."


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
    def kind(self) -> str:
        return "context_exceeded"

    @property
    def user_message(self) -> str:
        size = f" ({self.prompt_tokens:,} tokens)" if self.prompt_tokens else ""
        limit = self.limit or self.window
        window = f" of {limit:,} tokens" if limit else ""
        return (
            f"The request{size} did not fit the model server's context window{window}. "
            "Try /compact or /new, or raise the server's context size."
        )


# How servers say they do not take image parts, each seen in the wild (llama.cpp without
# its --mmproj, Ollama with a text-only model, vLLM, OpenAI, LM Studio, servers that
# want the content as a string). Read only for a request that carried images, and after
# the context-overflow wordings (`llm.window.OVERFLOW_PATTERNS`): an overflow is not this.
IMAGE_REFUSAL_PATTERNS: Final = tuple(
    re.compile(pattern, re.IGNORECASE | re.DOTALL)
    for pattern in (
        r"image input is not supported",
        r"does(?: not|n't) support (?:image|vision|multimodal)",
        r"(?:image|vision|multimodal)s?(?: input)? (?:is |are )?not supported",
        r"not a multimodal model",
        r"image_url is only supported",
        r"unknown variant `?image_url",
        r"missing data required for image input",
        r"unsupported content(?: part)? type",
        r"invalid content type",
        r"content.{0,40}must be a string",
        r"input should be a valid string",
    )
)


def refuses_images(detail: str) -> bool:
    """Whether a server's error text says it does not take image parts."""
    return any(pattern.search(detail) for pattern in IMAGE_REFUSAL_PATTERNS)


class LLMImagesRefused(LLMRequestRejected):
    """The server refused the request's image parts: its model cannot see. The client
    answers without them (and sends none to that endpoint again); it reaches a caller
    only from a request that had no images, where it is a plain refusal."""

    @property
    def kind(self) -> str:
        return "images_refused"


class LLMTimeout(LLMError):
    """The model did not start, or did not finish, in time (see `LLMTimeouts`).

    `cause` says which limit ("no first token within 60 s").
    """

    user_text = "The model took too long to answer. Please try again."

    def __init__(self, message: str, *, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def kind(self) -> str:
        return "timeout"

    @property
    def user_message(self) -> str:
        if self.endpoint is None:
            return self.user_text
        cause = f" ({self.cause})" if self.cause else ""
        return f"The model at {shown_url(self.endpoint)} took too long to answer{cause}. Please try again."


class LLMStreamError(LLMError):
    """The streamed answer was garbled, cut off, or failed after text had been shown."""

    user_text = "The model's answer was cut off or garbled. Please try again."

    @property
    def kind(self) -> str:
        return "stream"

    @property
    def user_message(self) -> str:
        if self.endpoint is None:
            return self.user_text
        return f"The answer from {self.server} was cut off or garbled. Please try again."
