"""A model's answer, and putting it together from streamed chunks (pure, no I/O).

`Assembly` folds `chat.completion.chunk` objects in as they arrive: text deltas are
appended (and returned, for `on_text`), tool-call deltas are gathered by their `index`
(id and name come in the first delta, argument text in pieces across later ones), the
finish reason and the usage chunk are kept. A server that ignored `"stream": true` and
sent one `chat.completion` body is folded in with `add_whole`.

Error handling: a chunk of the wrong shape raises `LLMStreamError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ganglion.config import PriceConfig
from ganglion.llm.errors import LLMStreamError
from ganglion.transcript import ToolCall, Usage

__all__ = ["Assembly", "Completion"]


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer of the model.

    `content` is the whole text ("" when the model only called tools); `tool_calls` keep
    their arguments as the raw JSON text the model wrote (not validated here);
    `finish_reason` is the server's ("stop", "tool_calls", "length", ...); `usage` is zero
    when the server reported none; `model` is the model that answered, as the server named
    it; `endpoint` the base URL that answered (the primary or a fallback).
    `images_refused`: the request's images were refused by that server, and it was
    answered without them. `price`: what that endpoint's tokens cost (None: no price).
    """

    content: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    endpoint: str
    images_refused: bool = False
    price: PriceConfig | None = None


# No chat answer or tool call is this long; a model that writes more is stuck in a loop.
MAX_ANSWER_CHARS = 1_000_000
CUT_NOTE = "\n\n[… the answer was cut here: the model went on past 1,000,000 characters]"


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class Assembly:
    """The answer being streamed in; `events` counts the chunks folded in so far.

    An answer longer than `MAX_ANSWER_CHARS` (text and tool-call arguments together: a
    model repeating itself until its window is full) is cut there: `cut` is set, the
    text ends with `CUT_NOTE`, and the assembly counts as complete with finish reason
    "length", so the reader stops reading (and the server stops generating).
    """

    model: str
    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    done: bool = False
    events: int = 0
    size: int = 0
    cut: bool = False

    @property
    def complete(self) -> bool:
        """Whether the stream ended properly: `[DONE]` or at least a finish reason."""
        return self.done or self.finish_reason is not None

    def add_chunk(self, chunk: Any) -> str:
        """Fold in one streamed chunk; return the text it added ("" for none)."""
        self.events += 1
        try:
            return self._fold_chunk(chunk)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise LLMStreamError(f"unexpected stream event: {str(chunk)[:200]!r}") from exc

    def add_whole(self, body: Any) -> None:
        """Fold in a whole non-streamed `chat.completion` body."""
        self.events += 1
        try:
            self._fold_whole(body)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise LLMStreamError(f"unexpected response body: {str(body)[:200]!r}") from exc
        self.done = True

    def completion(self, endpoint: str) -> Completion:
        calls = tuple(
            ToolCall(call.id or f"call_{index}", call.name, "".join(call.arguments))
            for index, call in sorted(self.calls.items())
        )
        return Completion(
            "".join(self.text), calls, self.finish_reason, self.usage, self.model, endpoint
        )

    def _fold_chunk(self, chunk: Any) -> str:
        if not isinstance(chunk, dict):
            raise LLMStreamError(f"a stream event is not a JSON object: {str(chunk)[:200]!r}")
        if "error" in chunk:
            raise LLMStreamError(
                f"the server reported an error mid-stream: {chunk['error']!r:.300}"
            )
        self.model = chunk.get("model") or self.model
        if isinstance(usage := chunk.get("usage"), dict):
            self.usage = _usage(usage)
        added = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(piece := delta.get("content"), str) and piece:
                piece = self._take(piece)
                self.text.append(piece)
                added.append(piece)
            for call in delta.get("tool_calls") or ():
                self._fold_call_delta(call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        if self.cut:
            self.text.append(CUT_NOTE)
            added.append(CUT_NOTE)
            self.finish_reason, self.done = "length", True
        return "".join(added)

    def _take(self, piece: str) -> str:
        """What of `piece` fits under `MAX_ANSWER_CHARS`; sets `cut` when not all of it."""
        room = MAX_ANSWER_CHARS - self.size
        if len(piece) > room:
            self.cut = True
            piece = piece[: max(0, room)]
        self.size += len(piece)
        return piece

    def _fold_call_delta(self, call: dict[str, Any]) -> None:
        partial = self.calls.setdefault(self._call_index(call), _PartialCall())
        partial.id = partial.id or call.get("id") or ""
        function = call.get("function") or {}
        # The name comes once, in the first delta; some servers repeat it, never split it.
        partial.name = partial.name or function.get("name") or ""
        if arguments := function.get("arguments"):
            partial.arguments.append(self._take(_json_text(arguments)))

    def _call_index(self, call: dict[str, Any]) -> int:
        if (index := call.get("index")) is not None:
            return int(index)
        # No index (seen from some servers that send each call whole): go by the id.
        call_id = call.get("id")
        for index, partial in self.calls.items():
            if call_id and partial.id == call_id:
                return index
        if call_id or not self.calls:
            return len(self.calls)
        return max(self.calls)

    def _fold_whole(self, body: Any) -> None:
        if not isinstance(body, dict) or not body.get("choices"):
            raise LLMStreamError(f"the response has no choices: {str(body)[:200]!r}")
        choice = body["choices"][0]
        message = choice.get("message") or {}
        self.text.append(message.get("content") or "")
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            arguments = _json_text(function.get("arguments") or "")
            self.calls[index] = _PartialCall(
                call.get("id") or "", function.get("name") or "", [arguments]
            )
        self.finish_reason = choice.get("finish_reason") or "stop"
        if isinstance(usage := body.get("usage"), dict):
            self.usage = _usage(usage)
        self.model = body.get("model") or self.model


def _json_text(arguments: Any) -> str:
    """Arguments as text: servers send a JSON string; a few send the object itself."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(cached),
    )


def _count(value: Any) -> int:
    """A token count as servers send it; anything that is not a count is none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
