"""An OpenAI-compatible chat-completions client over httpx, streaming by default.

One call to `complete` streams `POST {base_url}/chat/completions`, hands text deltas to
`on_text` as they arrive, assembles tool-call deltas by index, and returns a
`Completion`. Time limits, per attempt: `connect` (opening the connection),
`first_token` (request sent -> first streamed event), `idle` (longest gap between two
chunks) and `total`. Failures before any text was streamed are retried with jittered
exponential backoff (connection errors, time-outs, 429 honouring Retry-After, 5xx; never
other 4xx); then the next fallback endpoint is tried. A failure after text was streamed
is not retried silently: the reader has already seen part of an answer.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import trio

from ganglion.chat import ChatMessage, ToolCall, Usage
from ganglion.config import EndpointConfig, LLMConfig, LLMTimeouts, RetryConfig
from ganglion.llm.errors import (
    LLMError,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from ganglion.llm.sse import SSEParser

__all__ = ["Completion", "LLMClient", "LLMStatistics"]

log = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]
ERROR_BODY_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class LLMStatistics:
    requests: int
    retries: int
    failures: int
    fallbacks_used: int
    usage: Usage


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass
class _Assembly:
    """The streamed answer being put together."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    done: bool = False
    events: int = 0

    def completion(self, endpoint: str) -> Completion:
        calls = tuple(
            ToolCall(c.get("id") or f"call_{i}", c.get("name", ""), c.get("arguments", ""))
            for i, c in sorted(self.calls.items())
        )
        return Completion(
            "".join(self.text), calls, self.finish_reason, self.usage, self.model, endpoint
        )


class LLMClient:
    def __init__(
        self,
        endpoints: Sequence[EndpointConfig],
        *,
        timeouts: LLMTimeouts,
        retries: RetryConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self._endpoints = list(endpoints)
        self._timeouts = timeouts
        self._retries = retries
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(connect=timeouts.connect, read=None, write=30.0, pool=None),
        )
        self._requests = self._retry_count = self._failures = self._fallbacks = 0
        self._usage = Usage()

    @classmethod
    def from_config(cls, llm: LLMConfig, **kw: Any) -> LLMClient:
        return cls([llm, *llm.fallbacks], timeouts=llm.timeouts, retries=llm.retries, **kw)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> LLMStatistics:
        return LLMStatistics(
            self._requests, self._retry_count, self._failures, self._fallbacks, self._usage
        )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        on_text: OnText | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask the model; see the module docstring for streaming, limits and retries.

        Error handling: raises an `LLMError` subclass; nothing else escapes for problems
        of the server or the network.
        """
        body: dict[str, Any] = {
            "messages": [m.to_api() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = list(tools)
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        last: LLMError = LLMUnavailable("no endpoint tried")
        for index, endpoint in enumerate(self._endpoints):
            if index:
                self._fallbacks += 1
                log.warning("falling back to %s (%s)", endpoint.base_url, endpoint.model)
            try:
                completion = await self._with_retries(
                    endpoint, {**body, "model": endpoint.model}, on_text
                )
            except (LLMUnavailable, LLMTimeout) as exc:
                last = exc
                continue
            except LLMError:
                self._failures += 1
                raise
            self._usage = self._usage + completion.usage
            return completion
        self._failures += 1
        raise last

    async def _with_retries(
        self, endpoint: EndpointConfig, body: dict[str, Any], on_text: OnText | None
    ) -> Completion:
        streamed = [False]

        async def relay(text: str) -> None:
            streamed[0] = True
            if on_text is not None:
                await on_text(text)

        for attempt in range(self._retries.attempts):
            try:
                return await self._attempt(endpoint, body, relay)
            except _Retryable as exc:
                if streamed[0]:
                    raise LLMStreamError(f"interrupted after text was streamed: {exc}") from exc
                if attempt + 1 >= self._retries.attempts:
                    log.warning("%s failed %d time(s): %s", endpoint.base_url, attempt + 1, exc)
                    raise exc.error from exc
                delay = exc.retry_after
                if delay is None:
                    delay = self._retries.initial_backoff * 2**attempt
                    delay *= 1 + 0.2 * self._rng.uniform(-1, 1)
                delay = min(delay, self._retries.max_backoff)
                log.info("model request failed (%s); retrying in %.1f s", exc, delay)
                self._retry_count += 1
                await trio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(
        self, endpoint: EndpointConfig, body: dict[str, Any], on_text: OnText
    ) -> Completion:
        self._requests += 1
        headers = {"Accept": "text/event-stream", **endpoint.headers}
        if endpoint.api_key is not None:
            headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
        assembly = _Assembly(model=endpoint.model)
        timeouts = self._timeouts
        with trio.move_on_after(timeouts.total) as total:
            watchdog = trio.CancelScope(deadline=trio.current_time() + timeouts.first_token)
            with watchdog:
                try:
                    async with self._http.stream(
                        "POST", f"{endpoint.base_url}/chat/completions", json=body, headers=headers
                    ) as response:
                        await self._check_status(response)
                        await self._read_stream(response, assembly, on_text, watchdog)
                except httpx.TimeoutException as exc:
                    raise _Retryable(LLMTimeout(f"connect: {exc!r}")) from exc
                except (httpx.ConnectError, httpx.ReadError, httpx.WriteError) as exc:
                    if assembly.events:
                        raise LLMStreamError(f"connection lost mid-stream: {exc!r}") from exc
                    raise _Retryable(LLMUnavailable(f"{endpoint.base_url}: {exc!r}")) from exc
                except httpx.RemoteProtocolError as exc:
                    if assembly.events:
                        raise LLMStreamError(f"stream truncated: {exc!r}") from exc
                    raise _Retryable(LLMUnavailable(f"{endpoint.base_url}: {exc!r}")) from exc
            if watchdog.cancelled_caught:
                what = "idle gap between chunks" if assembly.events else "first token"
                raise _Retryable(LLMTimeout(f"{endpoint.base_url}: {what} time-out"))
        if total.cancelled_caught:
            raise _Retryable(LLMTimeout(f"{endpoint.base_url}: total time-out"))
        if not assembly.done and assembly.finish_reason is None:
            raise LLMStreamError("the stream ended without a finish reason or [DONE]")
        return assembly.completion(endpoint.base_url)

    async def _check_status(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        detail = (await response.aread())[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Retryable(LLMUnavailable(f"HTTP {status}: {detail[:300]}"), retry_after)
        raise LLMRequestRejected(status, detail)

    async def _read_stream(
        self,
        response: httpx.Response,
        assembly: _Assembly,
        on_text: OnText,
        watchdog: trio.CancelScope,
    ) -> None:
        if response.headers.get("content-type", "").startswith("application/json"):
            # A server that ignored "stream": take the whole answer at once.
            _apply_whole(json.loads(await response.aread()), assembly)
            assembly.done = True
            if assembly.text:
                await on_text("".join(assembly.text))
            return
        parser = SSEParser()
        async for line in response.aiter_lines():
            watchdog.deadline = trio.current_time() + self._timeouts.idle
            data = parser.feed_line(line)
            if data is None:
                continue
            if data.strip() == "[DONE]":
                assembly.done = True
                return
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                raise LLMStreamError(f"malformed JSON in the stream: {data[:200]!r}") from None
            assembly.events += 1
            try:
                text = _apply_chunk(chunk, assembly)
            except (TypeError, ValueError, AttributeError) as exc:
                raise LLMStreamError(f"unexpected stream event: {data[:200]!r}") from exc
            if text:
                await on_text(text)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _apply_chunk(chunk: Any, assembly: _Assembly) -> str:
    """Fold one `chat.completion.chunk` into `assembly`; return its new text."""
    if not isinstance(chunk, dict):
        raise LLMStreamError("a stream event is not a JSON object")
    if "error" in chunk:
        raise LLMStreamError(
            f"the server reported an error mid-stream: {str(chunk['error'])[:200]}"
        )
    assembly.model = chunk.get("model") or assembly.model
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        assembly.usage = Usage(
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
    text = ""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        piece = delta.get("content")
        if isinstance(piece, str) and piece:
            assembly.text.append(piece)
            text += piece
        for call in delta.get("tool_calls") or []:
            slot = assembly.calls.setdefault(int(call.get("index", 0)), {})
            if call.get("id"):
                slot["id"] = call["id"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["name"] = slot.get("name", "") + function["name"]
            if function.get("arguments"):
                slot["arguments"] = slot.get("arguments", "") + function["arguments"]
        if choice.get("finish_reason"):
            assembly.finish_reason = choice["finish_reason"]
    return text


def _apply_whole(body: Any, assembly: _Assembly) -> None:
    if not isinstance(body, dict) or not body.get("choices"):
        raise LLMStreamError("the response has no choices")
    choice = body["choices"][0]
    message = choice.get("message") or {}
    assembly.text.append(message.get("content") or "")
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        assembly.calls[index] = {
            "id": call.get("id", ""),
            "name": function.get("name", ""),
            "arguments": function.get("arguments", ""),
        }
    assembly.finish_reason = choice.get("finish_reason") or "stop"
    usage = body.get("usage") or {}
    assembly.usage = Usage(
        int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    )
    assembly.model = body.get("model") or assembly.model
