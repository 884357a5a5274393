"""The OpenAI-compatible model client.

- `client`: `LLMClient` (streaming, time limits, retries, fallbacks) and its statistics;
- `completion`: the `Completion` record and its assembly from streamed chunks (pure);
- `sse`: a Server-Sent Events line parser (pure);
- `textcalls`: tool calls that local models write as text (pure);
- `window`: the context window the server serves, learned and calibrated;
- `errors`: the `LLMError` hierarchy, each with a message safe to show in a chat.
"""

from ganglion.llm.client import LLMClient, LLMStatistics, OnText
from ganglion.llm.completion import Completion
from ganglion.llm.errors import (
    LLMContextExceeded,
    LLMError,
    LLMImagesRefused,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from ganglion.llm.sse import SSEParser
from ganglion.llm.textcalls import extract_text_tool_calls

__all__ = [
    "Completion",
    "LLMClient",
    "LLMContextExceeded",
    "LLMError",
    "LLMImagesRefused",
    "LLMRequestRejected",
    "LLMStatistics",
    "LLMStreamError",
    "LLMTimeout",
    "LLMUnavailable",
    "OnText",
    "SSEParser",
    "extract_text_tool_calls",
]
