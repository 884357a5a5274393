"""The context window a model server really serves, learned and kept per endpoint.

The configured `llm.context_window` is often wrong: Ollama serves 2,048-4,096 tokens per
request whatever the model supports unless `num_ctx` says otherwise, llama.cpp splits its
`--ctx-size` over `--parallel` slots, LM Studio loads models with a context of its own
choosing. Three sources are combined, the smallest wins:

1. the configuration (`llm.context_window`);
2. what the server says it serves, asked at start-up and after a reconnect
   (`probe_served_window`): llama.cpp's `/props` (context per slot), vLLM's `/v1/models`
   (`max_model_len`), LM Studio's `/api/v0/models` (`loaded_context_length`), Ollama's
   `/api/show` (`num_ctx` in force, else the server's default) and `/api/ps`;
3. what a refusal states ("exceeds the available context size (2048 tokens)"), parsed by
   `parse_overflow` from the wordings of llama.cpp, vLLM, OpenAI, LM Studio and Ollama,
   all kept in `OVERFLOW_PATTERNS`.

`WindowState` also calibrates the byte-based token estimate (`ganglion.tokens`) against
the server's real tokenizer: every answer's `usage.prompt_tokens` divided by the estimate
of the request that produced it gives a ratio, averaged per endpoint, so the estimate
converges on the real count. Implausible samples (a server that reports cached tokens
only, or a fixed number) are ignored rather than trusted.

The parsing here is pure; only `probe_served_window` does I/O.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ganglion.llm.errors import LLMUnavailable

__all__ = [
    "OVERFLOW_PATTERNS",
    "Overflow",
    "ServedWindow",
    "WindowState",
    "parse_overflow",
    "probe_served_window",
    "served_from_llamacpp_props",
    "served_from_lmstudio_models",
    "served_from_ollama",
    "served_from_openai_models",
]

log = logging.getLogger(__name__)

# Ollama's documented default when neither the model nor the server sets num_ctx.
OLLAMA_DEFAULT_CONTEXT = 4096
PROBE_SECONDS = 5.0
# Real tokenizers take between about 1 token per 6 bytes and 1 per byte and a half of
# what `ganglion.tokens` counts at 3 bytes per token; a ratio outside this range is a
# server that reports something else, and is ignored.
RATIO_RANGE = (0.4, 2.0)
# How fast the ratio follows new samples (an exponential moving average).
RATIO_WEIGHT = 0.3
# Counts are rounded up by this much: the ratio is an average, one request may be worse.
SAFETY = 1.08


@dataclass(frozen=True, slots=True)
class Overflow:
    """A refusal because the request did not fit: `limit` is the context the server
    states (None when it does not say), `prompt_tokens` the request's size it states."""

    limit: int | None = None
    prompt_tokens: int | None = None


# (server, pattern): `limit` and `prompt` name the numbers a wording states. Checked in
# order; the first match decides. Each is tested against the server's real message
# (tests/test_llm_window.py).
OVERFLOW_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (server, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for server, pattern in [
        # request (2070 tokens) exceeds the available context size (2048 tokens), try ...
        (
            "llama.cpp",
            r"request \((?P<prompt>\d+) tokens\) exceeds the available context size "
            r"\((?P<limit>\d+) tokens\)",
        ),
        # the request exceeds the available context size, try increasing it (older builds)
        ("llama.cpp", r"exceeds the available context size"),
        # This model's maximum context length is 4096 tokens. However, you requested 5000
        # tokens (4000 in the messages, 1000 in the completion). / However, your messages
        # resulted in 9000 tokens. / However, your request has 3000 input tokens.
        (
            "vLLM/OpenAI",
            r"maximum context length is (?P<limit>\d+) tokens.*?"
            r"(?:requested \d+ tokens \((?P<prompt>\d+) in the messages"
            r"|resulted in (?P<prompt2>\d+) tokens|has (?P<prompt3>\d+) input tokens)",
        ),
        ("vLLM/OpenAI", r"maximum context length is (?P<limit>\d+) tokens"),
        # Input tokens exceed the configured limit of 272000 tokens. Your messages
        # resulted in 300000 tokens.
        (
            "OpenAI",
            r"exceed the configured limit of (?P<limit>\d+) tokens"
            r"(?:.*?resulted in (?P<prompt>\d+) tokens)?",
        ),
        ("OpenAI", r"context_length_exceeded|exceeds the context window"),
        # Trying to keep the first 10136 tokens when context the overflows. However, the
        # model is loaded with context length of only 7866 tokens, which is not enough.
        (
            "LM Studio",
            r"keep the first (?P<prompt>\d+) tokens when context the overflows.*?"
            r"context length of only (?P<limit>\d+) tokens",
        ),
        # Reached context length of 4096 tokens with model ... mid-generation overflow
        ("LM Studio", r"reached context length of (?P<limit>\d+) tokens"),
        # Ollama (its native API): the input length exceeds the context length
        ("Ollama", r"input length exceeds the (?:maximum )?context length"),
        ("generic", r"context (?:length|window|size) (?:exceeded|is exceeded|overflow)"),
        ("generic", r"too many tokens|prompt is too long"),
    ]
)


def parse_overflow(detail: str) -> Overflow | None:
    """The overflow a server's error text describes, or None if it describes another
    problem. `detail` is the error message or the whole error body."""
    for _server, pattern in OVERFLOW_PATTERNS:
        match = pattern.search(detail)
        if match is None:
            continue
        found = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        prompt = found.get("prompt") or found.get("prompt2") or found.get("prompt3")
        return Overflow(limit=found.get("limit"), prompt_tokens=prompt)
    return None


@dataclass(frozen=True, slots=True)
class ServedWindow:
    """The context a server serves per request, and how we know (`source`)."""

    tokens: int
    source: str


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def served_from_llamacpp_props(props: Any) -> ServedWindow | None:
    """llama.cpp's `GET /props`: `default_generation_settings.n_ctx` is the context of
    one slot, which is what one request may use."""
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    n_ctx = _positive_int(settings.get("n_ctx")) if isinstance(settings, dict) else None
    if n_ctx is None:
        return None
    slots = _positive_int(props.get("total_slots"))
    detail = f", {slots} slot(s)" if slots else ""
    return ServedWindow(n_ctx, f"llama.cpp /props: context per slot{detail}")


def _model_entries(listing: Any) -> list[dict[str, Any]]:
    data = listing.get("data") if isinstance(listing, dict) else None
    return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []


def _entry_for(entries: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    named = [entry for entry in entries if entry.get("id") == model]
    if named:
        return named[0]
    return entries[0] if len(entries) == 1 else None


def served_from_openai_models(listing: Any, model: str) -> ServedWindow | None:
    """`GET /v1/models` of vLLM (`max_model_len`) and of newer llama.cpp (`meta.n_ctx`)."""
    entry = _entry_for(_model_entries(listing), model)
    if entry is None:
        return None
    if (tokens := _positive_int(entry.get("max_model_len"))) is not None:
        return ServedWindow(tokens, "vLLM /v1/models: max_model_len")
    meta = entry.get("meta")
    if isinstance(meta, dict) and (tokens := _positive_int(meta.get("n_ctx"))) is not None:
        return ServedWindow(tokens, "llama.cpp /v1/models: n_ctx per slot")
    return None


def served_from_lmstudio_models(listing: Any, model: str) -> ServedWindow | None:
    """LM Studio's `GET /api/v0/models`: the loaded context, else the model's maximum."""
    entry = _entry_for(_model_entries(listing), model)
    if entry is None:
        return None
    if (tokens := _positive_int(entry.get("loaded_context_length"))) is not None:
        return ServedWindow(tokens, "LM Studio /api/v0/models: loaded_context_length")
    if (tokens := _positive_int(entry.get("max_context_length"))) is not None:
        return ServedWindow(tokens, "LM Studio /api/v0/models: max_context_length")
    return None


def served_from_ollama(show: Any, running: Any, model: str) -> ServedWindow | None:
    """Ollama: `POST /api/show` (the model's `num_ctx` parameter and trained context),
    then `GET /api/ps` (the context the loaded model runs with), else Ollama's default.

    Over the OpenAI-compatible API Ollama cuts what does not fit silently, so a guess that
    is too large is worse than one that is too small: without `num_ctx` anywhere, the
    server's documented default is assumed. Only an answer of Ollama's shape counts
    (`model_info`, `parameters` or `details`): another server may answer any JSON object
    at that path, and taking it for Ollama would cap the window at Ollama's default.
    """
    if not isinstance(show, dict) or not _ollama_shaped(show):
        return None
    trained = None
    info = show.get("model_info")
    if isinstance(info, dict):
        trained = next(
            (
                _positive_int(value)
                for key, value in info.items()
                if key.endswith(".context_length") and _positive_int(value)
            ),
            None,
        )
    parameters = show.get("parameters")
    if isinstance(parameters, str):
        match = re.search(r"^\s*num_ctx\s+(\d+)", parameters, re.MULTILINE)
        if match:
            return ServedWindow(int(match.group(1)), "Ollama /api/show: num_ctx parameter")
    for entry in running.get("models", []) if isinstance(running, dict) else []:
        if not isinstance(entry, dict) or entry.get("name") not in (model, f"{model}:latest"):
            continue
        if (tokens := _positive_int(entry.get("context_length"))) is not None:
            return ServedWindow(tokens, "Ollama /api/ps: context_length of the loaded model")
    tokens = min(OLLAMA_DEFAULT_CONTEXT, trained) if trained else OLLAMA_DEFAULT_CONTEXT
    return ServedWindow(tokens, "Ollama's default num_ctx (the model sets none)")


def _ollama_shaped(show: dict[str, Any]) -> bool:
    return (
        isinstance(show.get("model_info"), dict)
        or isinstance(show.get("parameters"), str)
        or isinstance(show.get("details"), dict)
    )


async def _get_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    first: bool = False,
    **kwargs: Any,
) -> Any:
    """The JSON body of a 2xx answer, else None (an error means "this server does not
    say"); for the `first` request, a server that cannot be reached raises instead."""
    try:
        response = await http.request(method, url, headers=dict(headers), **kwargs)
    except httpx.TransportError as exc:
        if first:
            raise LLMUnavailable(f"{url}: {exc!r}") from exc
        return None
    except httpx.HTTPError:
        return None
    if not 200 <= response.status_code < 300:
        return None
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


async def probe_served_window(
    http: httpx.AsyncClient, base_url: str, model: str, headers: Mapping[str, str]
) -> ServedWindow | None:
    """Ask the server at `base_url` what context it serves for `model`; None when it
    does not say (OpenAI, or a server that cannot be reached right now).

    Each kind of server is asked in turn, cheapest first, each within `PROBE_SECONDS`.
    Error handling: raises `LLMUnavailable` when the server cannot be reached at all;
    never raises for what it answers.
    """
    root = base_url.removesuffix("/v1")
    with trio.move_on_after(PROBE_SECONDS * 4):
        with trio.move_on_after(PROBE_SECONDS):
            listing = await _get_json(http, "GET", f"{base_url}/models", headers, first=True)
            if found := served_from_openai_models(listing, model):
                return found
        with trio.move_on_after(PROBE_SECONDS):
            if found := served_from_llamacpp_props(
                await _get_json(http, "GET", f"{root}/props", headers)
            ):
                return found
        with trio.move_on_after(PROBE_SECONDS):
            listing = await _get_json(http, "GET", f"{root}/api/v0/models", headers)
            if found := served_from_lmstudio_models(listing, model):
                return found
        with trio.move_on_after(PROBE_SECONDS):
            show = await _get_json(http, "POST", f"{root}/api/show", headers, json={"model": model})
            if show is not None:
                running = await _get_json(http, "GET", f"{root}/api/ps", headers)
                return served_from_ollama(show, running, model)
    return None


class WindowState:
    """What is known of one endpoint's context window, and how its tokens count.

    `limit` is the smallest of the configured window, the served one and the one learned
    from a refusal. `count(estimate)` turns a `ganglion.tokens` estimate into this
    server's tokens (calibrated, rounded up). Not thread-safe; used from the event loop.
    """

    def __init__(self, configured: int) -> None:
        self.configured = configured
        self.served: ServedWindow | None = None
        self.learned: int | None = None
        self.ratio = 1.0
        self.samples = 0
        self.probed = False

    @property
    def limit(self) -> int:
        return min(
            self.configured,
            self.served.tokens if self.served else self.configured,
            self.learned or self.configured,
        )

    def count(self, estimate: int) -> int:
        """`estimate` (from `ganglion.tokens`) in this server's tokens, rounded up."""
        return math.ceil(estimate * self.ratio * SAFETY)

    def calibrate(self, estimate: int, actual: int) -> bool:
        """Fold one observation in (the estimate of a request and the server's count of
        it); False when it was implausible and ignored."""
        if estimate <= 0 or actual <= 0:
            return False
        sample = actual / estimate
        if not RATIO_RANGE[0] <= sample <= RATIO_RANGE[1]:
            return False
        self.ratio = (
            sample
            if self.samples == 0
            else ((1 - RATIO_WEIGHT) * self.ratio + RATIO_WEIGHT * sample)
        )
        self.samples += 1
        return True

    def learn_overflow(self, overflow: Overflow, estimate: int) -> None:
        """A refusal for size: take the limit it states, calibrate with the size it
        states, and when it states neither, assume the window is a little smaller than
        what was just sent."""
        if overflow.prompt_tokens is not None:
            self.calibrate(estimate, overflow.prompt_tokens)
        if overflow.limit is not None:
            self.learned = min(self.learned or overflow.limit, overflow.limit)
        else:
            sent = self.count(estimate)
            self.learned = max(256, min(self.limit, int(sent * 0.9)))
