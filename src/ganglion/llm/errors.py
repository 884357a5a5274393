"""Errors of the model client; every one carries a short message safe to show in a chat.

LLMError                 base; `.user_message` is short and never holds raw server text
├── LLMUnavailable       connection errors, 5xx or 429 on every endpoint, after retries
├── LLMRequestRejected   a 4xx other than 429: the request itself was refused
├── LLMTimeout           no first token, a silent gap or the whole call took too long
└── LLMStreamError       malformed or truncated stream, or interrupted after tokens
"""

from __future__ import annotations

__all__ = ["LLMError", "LLMRequestRejected", "LLMStreamError", "LLMTimeout", "LLMUnavailable"]


class LLMError(Exception):
    user_text = "The model could not answer."

    @property
    def user_message(self) -> str:
        return self.user_text


class LLMUnavailable(LLMError):
    user_text = (
        "The model server is not reachable or keeps failing right now. Please try again later."
    )


class LLMRequestRejected(LLMError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail[:300]}")
        self.status = status

    @property
    def user_message(self) -> str:
        return f"The model server refused the request (HTTP {self.status}); see the daemon's log."


class LLMTimeout(LLMError):
    user_text = "The model took too long to answer. Please try again."


class LLMStreamError(LLMError):
    user_text = "The model's answer was cut off or garbled. Please try again."
