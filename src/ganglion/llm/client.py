"""An OpenAI-compatible chat-completions client over httpx, streaming.

`LLMClient.complete` sends `POST {base_url}/chat/completions` with `"stream": true` (and
`stream_options.include_usage`), hands text deltas to `on_text` as they arrive, gathers
tool-call deltas, and returns a `Completion`.

Time limits (`LLMTimeouts`), all *per attempt* (trio cancel scopes, except `connect`):

- `connect`: opening the TCP/TLS connection (httpx's connect timeout);
- `first_token`: from the start of the attempt (connecting included) to the first
  streamed event (keep-alive comments do not count as an event);
- `idle`: the longest silence between two network chunks once the stream has started
  (the time `on_text` itself takes is not counted);
- `total`: the whole attempt, from its start to the end of the stream.

Retries (`RetryConfig`): an attempt that fails with a connection error before the stream
started, HTTP 429 or a 5xx, or a time-out before any text reached `on_text`, is tried
again, up to `attempts` times per endpoint, after `initial_backoff * 2**n` seconds
(±20 % jitter, at most `max_backoff`); a 429 or 503 with `Retry-After` waits that long
instead (also at most `max_backoff`). Backoff sleeps count in none of the time limits.
A 4xx other than 429 is never retried. When the primary endpoint is exhausted, each
fallback endpoint is tried in order with its own attempts; so it is after a 401, 403 or
404 (a wrong key or model name is the endpoint's fault, not the request's), while any
other 4xx is raised at once. The last endpoint's error is raised when all have failed.

A failure *after* text reached `on_text` is never retried: the reader has already seen
part of an answer, so it is raised as `LLMStreamError`. Malformed events and a stream cut
off without a finish reason and without `[DONE]` are `LLMStreamError` too; a stream that
had its finish reason is a whole answer however it ended.
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import math
import random
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import trio

from ganglion.config import EndpointConfig, LLMConfig, LLMTimeouts, RetryConfig
from ganglion.cookieless import CookielessClient
from ganglion.llm.completion import Assembly, Completion
from ganglion.llm.errors import (
    DETAIL_LIMIT,
    LLMContextExceeded,
    LLMError,
    LLMImagesRefused,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
    refuses_images,
)
from ganglion.llm.sse import SSEParser, is_done
from ganglion.llm.window import Overflow, WindowState, parse_overflow, probe_served_window
from ganglion.tokens import estimate_request_tokens
from ganglion.transcript import ChatMessage, Usage
from ganglion_actors import Backoff

__all__ = [
    "Completion",
    "LLMClient",
    "LLMStatistics",
    "OnText",
    "parse_retry_after",
    "retry_delays",
    "server_message",
]

log = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]

JITTER = 0.2
# Refusals that say "not here" (bad key, no access, unknown model or path) rather than
# "not this request": a fallback endpoint may well accept the same request.
ENDPOINT_REJECTIONS = frozenset({401, 403, 404})
# After the finish reason only the usage chunk, [DONE] and the end of the body are
# expected: reading them keeps the connection reusable, but a server that lingers is not
# waited for long (the answer is whole already).
DRAIN_SECONDS = 2.0
ERROR_BODY_LIMIT = 64 * 1024
# A server that could not be asked what it serves is asked again at most this often.
PROBE_RETRY_SECONDS = 60.0
# How long `list_models` waits for the server's list (it explains a 404).
MODELS_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LLMStatistics:
    """Counters since the client was made.

    `requests`: HTTP requests sent (attempts); `retries`: attempts repeated after a
    failure; `failures`: `complete` calls that raised; `fallbacks_used`: fallback
    endpoints tried; `usage`: tokens of all successful answers; `answered`: `complete`
    calls that returned, `latency_seconds` their total duration; `errors`: the failed
    calls by `LLMError.kind`.
    """

    requests: int
    retries: int
    failures: int
    fallbacks_used: int
    usage: Usage
    answered: int = 0
    latency_seconds: float = 0.0
    errors: Mapping[str, int] = field(default_factory=dict)


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class LLMClient:
    """A client for one primary endpoint and its ordered fallbacks.

    Resource handling: owns an `httpx.AsyncClient` (a connection pool); close it with
    `aclose()` or use the client as an async context manager. One client serves any
    number of concurrent `complete` calls.
    """

    def __init__(
        self,
        endpoints: Sequence[EndpointConfig],
        *,
        timeouts: LLMTimeouts,
        retries: RetryConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        context_window: int = 8192,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self._endpoints = tuple(endpoints)
        self._timeouts = timeouts
        self._retries = retries
        self._rng = rng or random.Random()
        # Only connect is left to httpx; the stream's limits are cancel scopes below.
        self._http = CookielessClient(
            transport=transport,
            timeout=httpx.Timeout(connect=timeouts.connect, read=None, write=None, pool=None),
        )
        self._requests = self._retry_count = self._failures = self._fallbacks = 0
        self._answered = 0
        self._latency = 0.0
        self._errors: dict[str, int] = {}
        self._usage = Usage()
        self._windows = [WindowState(context_window) for _ in self._endpoints]
        # Which endpoints take image parts: `vision` as configured, until one refuses.
        self._sees = [endpoint.vision for endpoint in self._endpoints]
        self._probing = trio.Lock()
        self._next_probe = -math.inf
        self._reported: int | None = None

    @classmethod
    def from_config(
        cls,
        llm: LLMConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> LLMClient:
        """A client for `llm` (the primary endpoint) followed by `llm.fallbacks`."""
        return cls(
            [llm, *llm.fallbacks],
            timeouts=llm.timeouts,
            retries=llm.retries,
            transport=transport,
            rng=rng,
            context_window=llm.context_window,
        )

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

    async def window(self) -> WindowState:
        """What is known of the primary endpoint's context window (see `llm.window`).

        Asks the server what it serves the first time, and again after the connection
        was lost (a restarted server may serve another size); a server that cannot be
        reached is asked again at most once a minute. Logs the window in force whenever
        it changes, and warns when the configuration promises more than the server serves.
        """
        state = self._windows[0]
        if not state.probed and trio.current_time() >= self._next_probe:
            async with self._probing:
                if not state.probed and trio.current_time() >= self._next_probe:
                    await self._probe(self._endpoints[0], state)
        self._report(state)
        return state

    async def _probe(self, endpoint: EndpointConfig, state: WindowState) -> None:
        try:
            served = await probe_served_window(
                self._http, endpoint.base_url, endpoint.model, _headers(endpoint)
            )
        except LLMUnavailable as exc:
            log.info("could not ask %s for its context window: %s", endpoint.base_url, exc)
            self._next_probe = trio.current_time() + PROBE_RETRY_SECONDS
            return
        state.probed = True
        if served is not None:
            state.served = served
            # A refusal learned against the previous server says nothing of this one.
            state.learned = None

    def _report(self, state: WindowState) -> None:
        if state.limit == self._reported:
            return
        self._reported = state.limit
        endpoint = self._endpoints[0]
        if state.learned is not None and state.learned == state.limit:
            why = "learned from the server's refusal"
        elif state.served is not None and state.served.tokens == state.limit:
            why = state.served.source
        else:
            why = "llm.context_window; the server does not say what it serves"
        log.info(
            "context window for %s at %s: %d tokens (%s)",
            endpoint.model,
            endpoint.base_url,
            state.limit,
            why,
        )
        if state.configured > state.limit:
            log.warning(
                "llm.context_window is %d but %s serves only %d tokens per request; using "
                "%d (raise the server's context size, or set llm.context_window to match)",
                state.configured,
                endpoint.base_url,
                state.limit,
                state.limit,
            )

    @property
    def sees_images(self) -> bool:
        """Whether a request's images may go to some endpoint (see `complete`)."""
        return any(self._sees)

    def statistics(self) -> LLMStatistics:
        return LLMStatistics(
            self._requests,
            self._retry_count,
            self._failures,
            self._fallbacks,
            self._usage,
            answered=self._answered,
            latency_seconds=self._latency,
            errors=dict(self._errors),
        )

    async def list_models(self, index: int = 0) -> tuple[str, ...] | None:
        """The model ids endpoint `index` lists (`GET {base_url}/models`), None when it
        does not answer with a list within `MODELS_SECONDS`."""
        endpoint = self._endpoints[index]
        with trio.move_on_after(MODELS_SECONDS):
            try:
                response = await self._http.get(
                    f"{endpoint.base_url}/models", headers=_headers(endpoint)
                )
            except httpx.HTTPError:
                return None
            return _model_ids(response)
        return None

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        on_text: OnText | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask the model for the next message after `messages`.

        `tools` are OpenAI function schemas; `on_text` is awaited with each piece of text
        as it streams in (before the call returns). See the module docstring for the time
        limits, retries and fallbacks.

        Error handling: raises an `LLMError` subclass for every problem of the server, the
        network or the stream; nothing else escapes for those.
        """
        estimate = estimate_request_tokens(messages, tools)
        has_images = any(message.images for message in messages)
        last: LLMError | None = None
        started = trio.current_time()
        for index, endpoint in enumerate(self._endpoints):
            window = self._windows[index]
            if index:
                self._fallbacks += 1
                log.warning("falling back to %s (model %s)", endpoint.base_url, endpoint.model)
            try:
                completion = await self._complete_images_or_not(
                    index, messages, has_images, tools, on_text, temperature, max_tokens
                )
            except LLMError as exc:
                exc.at(endpoint.base_url, endpoint.model)
                if isinstance(exc, LLMContextExceeded):
                    window.learn_overflow(Overflow(exc.limit, exc.prompt_tokens), estimate)
                    exc.window = window.limit
                elif isinstance(exc, LLMUnavailable) and exc.status is None:
                    window.probed = False  # when it is back, it may serve another size
                elif isinstance(exc, LLMRequestRejected) and exc.status == 404:
                    exc.with_models(await self.list_models(index))
                if not _endpoint_fault(exc):
                    self._count_failure(exc)
                    raise
                last = exc
                continue
            completion = replace(completion, price=endpoint.price)
            window.calibrate(estimate, completion.usage.prompt_tokens)
            self._usage += completion.usage
            self._answered += 1
            self._latency += trio.current_time() - started
            return completion
        assert last is not None
        self._count_failure(last)
        raise last

    async def _complete_images_or_not(
        self,
        index: int,
        messages: Sequence[ChatMessage],
        has_images: bool,
        tools: Sequence[Mapping[str, Any]] | None,
        on_text: OnText | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> Completion:
        """Endpoint `index`, with the request's images when it takes them. One that
        refuses them is sent none from now on (one log line), and the request is asked
        again without them: `Completion.images_refused` tells the caller."""
        endpoint = self._endpoints[index]
        images = has_images and self._sees[index]
        body = _request_body(messages, tools, temperature, max_tokens, images=images)
        try:
            return await self._complete_on(endpoint, {**body, "model": endpoint.model}, on_text)
        except LLMImagesRefused as exc:
            if not images:
                raise
            self._sees[index] = False
            log.warning(
                "%s (model %s) refused the image parts (%s); llm.vision is off for it until "
                "the next start, pictures are described to the model instead",
                endpoint.base_url,
                endpoint.model,
                exc.detail,
            )
        body = _request_body(messages, tools, temperature, max_tokens, images=False)
        completion = await self._complete_on(endpoint, {**body, "model": endpoint.model}, on_text)
        return replace(completion, images_refused=True)

    def _count_failure(self, error: LLMError) -> None:
        self._failures += 1
        self._errors[error.kind] = self._errors.get(error.kind, 0) + 1

    async def _complete_on(
        self, endpoint: EndpointConfig, body: dict[str, Any], on_text: OnText | None
    ) -> Completion:
        """One endpoint, with its retries."""
        shown = False

        async def relay(text: str) -> None:
            nonlocal shown
            shown = True
            if on_text is not None:
                await on_text(text)

        attempts = self._retries.attempts
        delays = retry_delays(self._retries, self._rng)
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(endpoint, body, relay)
            except _Retryable as exc:
                if shown:
                    raise LLMStreamError(f"{exc} (after text was streamed)") from exc
                if attempt == attempts:
                    log.warning("%s failed %d time(s), last: %s", endpoint.base_url, attempt, exc)
                    raise exc.error from exc
                delay = next(delays)
                if exc.retry_after is not None:  # the server said when: believe it
                    delay = min(exc.retry_after, self._retries.max_backoff)
                log.info("model request failed (%s); retrying in %.1f s", exc, delay)
                self._retry_count += 1
                await trio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(
        self, endpoint: EndpointConfig, body: dict[str, Any], on_text: OnText
    ) -> Completion:
        """One HTTP request, streamed to the end under the per-attempt time limits."""
        self._requests += 1
        url = f"{endpoint.base_url}/chat/completions"
        assembly = Assembly(model=endpoint.model)
        with trio.move_on_after(self._timeouts.total) as total:
            watchdog = trio.CancelScope(deadline=trio.current_time() + self._timeouts.first_token)
            with watchdog:
                try:
                    async with self._http.stream(
                        "POST", url, json=body, headers=_headers(endpoint)
                    ) as response:
                        await _check_status(response, url)
                        await self._read(response, assembly, on_text, watchdog)
                except httpx.RequestError as exc:
                    if not assembly.complete:
                        raise _request_failure(url, exc, assembly) from exc
                    # The answer was whole; only the end of the body was lost.
                    log.debug("%s: the stream broke after its finish reason: %r", url, exc)
        if assembly.complete:
            return assembly.completion(endpoint.base_url)
        limits = self._timeouts
        if watchdog.cancelled_caught:
            if assembly.events:
                cause = f"silent for {limits.idle:g} s in the middle of its answer"
            else:
                cause = f"no first token within {limits.first_token:g} s"
            raise _Retryable(LLMTimeout(f"{url}: {cause}", cause=cause))
        if total.cancelled_caught:
            cause = f"the answer took longer than {limits.total:g} s"
            raise _Retryable(LLMTimeout(f"{url}: {cause}", cause=cause))
        raise LLMStreamError(f"{url}: the stream ended without a finish reason or [DONE]")

    async def _read(
        self,
        response: httpx.Response,
        assembly: Assembly,
        on_text: OnText,
        watchdog: trio.CancelScope,
    ) -> None:
        """Fold the response body into `assembly`, moving the watchdog's deadline along."""

        async def relay(text: str) -> None:
            watchdog.deadline = math.inf  # the consumer's time is not the server's silence
            await on_text(text)

        if response.headers.get("content-type", "").startswith("application/json"):
            # A server that ignored "stream": the whole answer at once.
            assembly.add_whole(_json(await response.aread()))
            if text := "".join(assembly.text):
                await relay(text)
            return
        parser = SSEParser()
        async for chunk in response.aiter_bytes():
            for data in parser.feed(chunk):
                await _fold_event(data, assembly, relay)
            if assembly.cut:
                log.warning("%s: the answer was cut at its length limit", response.url)
                return  # closing the response stops the server generating
            self._move_deadline(watchdog, assembly)
        for data in parser.close():
            await _fold_event(data, assembly, relay)

    def _move_deadline(self, watchdog: trio.CancelScope, assembly: Assembly) -> None:
        now = trio.current_time()
        if assembly.complete:
            watchdog.deadline = now + min(self._timeouts.idle, DRAIN_SECONDS)
        elif assembly.events:
            watchdog.deadline = now + self._timeouts.idle


async def _fold_event(data: str, assembly: Assembly, on_text: OnText) -> None:
    if assembly.done:
        return
    if is_done(data):
        assembly.done = True
        return
    if text := assembly.add_chunk(_json(data)):
        await on_text(text)


def _request_failure(url: str, exc: httpx.RequestError, assembly: Assembly) -> Exception:
    """Our error for a network failure of an attempt whose answer is not complete."""
    if assembly.events:
        return LLMStreamError(f"{url}: connection lost mid-stream: {exc!r}")
    if isinstance(exc, httpx.TimeoutException):
        cause = "could not connect in time" if isinstance(exc, httpx.ConnectTimeout) else ""
        return _Retryable(LLMTimeout(f"{url}: {exc!r}", cause=cause))
    return _Retryable(LLMUnavailable(f"{url}: {exc!r}", cause=_network_cause(exc)))


def _network_cause(exc: httpx.RequestError) -> str:
    """A short, fixed phrase for a network failure (never the exception's own text)."""
    if not isinstance(exc, httpx.ConnectError):
        return "the connection failed"
    errnos = {error.errno for error in _causes(exc) if isinstance(error, OSError)}
    text = " ".join(str(error) for error in _causes(exc)).lower()
    if errno.ECONNREFUSED in errnos or "refused" in text:
        return "connection refused"
    if any(isinstance(error, socket.gaierror) for error in _causes(exc)):
        return "the host name does not resolve"
    if "ssl" in text or "certificate" in text:
        return "the TLS handshake failed"
    if errnos & {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return "the network is unreachable"
    return "could not connect"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or groups, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        stack.extend(e for e in (error.__cause__, error.__context__) if e is not None)


def _model_ids(response: httpx.Response) -> tuple[str, ...] | None:
    if not 200 <= response.status_code < 300:
        return None
    try:
        data = response.json().get("data")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return tuple(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)


def _endpoint_fault(error: LLMError) -> bool:
    """Whether `error` is about the endpoint rather than the request, so another may do."""
    if isinstance(error, LLMRequestRejected):
        return error.status in ENDPOINT_REJECTIONS
    return isinstance(error, LLMUnavailable | LLMTimeout)


def _json(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LLMStreamError(f"malformed JSON from the server: {data[:200]!r}") from None


def _request_body(
    messages: Sequence[ChatMessage],
    tools: Sequence[Mapping[str, Any]] | None,
    temperature: float | None,
    max_tokens: int | None,
    *,
    images: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [message.to_api(images=images) for message in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [dict(tool) for tool in tools]
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def _headers(endpoint: EndpointConfig) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", **endpoint.headers}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
    return headers


async def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    body = await _read_some(response, ERROR_BODY_LIMIT)
    detail = server_message(body)
    if status in (400, 413, 500) and (overflow := _overflow(body, detail)) is not None:
        raise LLMContextExceeded(
            status, detail, limit=overflow.limit, prompt_tokens=overflow.prompt_tokens
        )
    if status in (400, 415, 422, 500) and refuses_images(detail):
        raise LLMImagesRefused(status, detail)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = LLMUnavailable(f"{url}: HTTP {status}: {detail}", status=status)
        raise _Retryable(error, retry_after)
    raise LLMRequestRejected(status, detail)


def _overflow(body: bytes, detail: str) -> Overflow | None:
    """The context overflow an error body describes, from its message or, for servers
    that state the numbers as fields (llama.cpp: `n_prompt_tokens`, `n_ctx`), from them."""
    overflow = parse_overflow(detail)
    if overflow is None:
        return None
    try:
        error = json.loads(body).get("error")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return overflow
    if isinstance(error, dict):
        limit, prompt = error.get("n_ctx"), error.get("n_prompt_tokens")
        return Overflow(
            limit=limit if isinstance(limit, int) and limit > 0 else overflow.limit,
            prompt_tokens=prompt
            if isinstance(prompt, int) and prompt > 0
            else overflow.prompt_tokens,
        )
    return overflow


async def _read_some(response: httpx.Response, limit: int) -> bytes:
    """At most about `limit` bytes of the body (an error page may be of any size)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body)


def server_message(body: bytes) -> str:
    """The useful part of an error body, for the log: `error.message` if it is JSON."""
    text = body[: DETAIL_LIMIT * 4].decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return text[:DETAIL_LIMIT]
    error = value.get("error") if isinstance(value, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return (message if isinstance(message, str) and message else text)[:DETAIL_LIMIT]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_delays(retries: RetryConfig, rng: random.Random) -> Iterator[float]:
    """The seconds to wait after each failed attempt of one endpoint, the first one first:
    the runtime's jittered exponential backoff, never more than `retries.max_backoff`
    (a server's Retry-After replaces one)."""
    backoff = Backoff(
        initial=retries.initial_backoff, factor=2.0, maximum=retries.max_backoff, jitter=JITTER
    )
    return (min(delay, retries.max_backoff) for delay in backoff.delays(rng))
