"""The OpenAI-compatible model client."""

from ganglion.llm.client import Completion, LLMClient, LLMStatistics
from ganglion.llm.errors import (
    LLMError,
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
    "LLMError",
    "LLMRequestRejected",
    "LLMStatistics",
    "LLMStreamError",
    "LLMTimeout",
    "LLMUnavailable",
    "SSEParser",
    "extract_text_tool_calls",
]
