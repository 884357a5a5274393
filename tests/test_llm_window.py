"""The context window: refusals for size in each server's own words, what servers say
they serve, and the calibration of the token estimate."""

from __future__ import annotations

import httpx
import pytest

from ganglion.llm.window import (
    OLLAMA_DEFAULT_CONTEXT,
    Overflow,
    WindowState,
    parse_overflow,
    probe_served_window,
    served_from_llamacpp_props,
    served_from_lmstudio_models,
    served_from_ollama,
    served_from_openai_models,
)

# The messages as the servers send them (llama.cpp: seen from xllamacpp on this machine;
# the others from their issue trackers and documentation).
REFUSALS = [
    (
        "llama.cpp",
        "request (2531 tokens) exceeds the available context size (2048 tokens), try increasing it",
        Overflow(limit=2048, prompt_tokens=2531),
    ),
    (
        "llama.cpp (older)",
        "the request exceeds the available context size, try increasing it",
        Overflow(),
    ),
    (
        "vLLM",
        "This model's maximum context length is 16384 tokens. However, you requested "
        "122946 tokens (112946 in the messages, 10000 in the completion). Please reduce the "
        "length of the messages or completion.",
        Overflow(limit=16384, prompt_tokens=112946),
    ),
    (
        "vLLM (newer)",
        "'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum "
        "context length is 4096 tokens and your request has 3500 input tokens "
        "(1000 > 4096 - 3500).",
        Overflow(limit=4096, prompt_tokens=3500),
    ),
    (
        "OpenAI",
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages.",
        Overflow(limit=8192, prompt_tokens=9000),
    ),
    (
        "OpenAI (newer)",
        "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted "
        "in 300000 tokens. Please reduce the length of the messages.",
        Overflow(limit=272000, prompt_tokens=300000),
    ),
    (
        "LM Studio",
        "Trying to keep the first 10136 tokens when context the overflows. However, the "
        "model is loaded with context length of only 7866 tokens, which is not enough. Try "
        "to load the model with a larger context length, or provide a shorter input",
        Overflow(limit=7866, prompt_tokens=10136),
    ),
    (
        "LM Studio (mid-generation)",
        "Reached context length of 4096 tokens with model (arch: qwen3vlmoe) that does not "
        "currently support mid-generation context overflow.",
        Overflow(limit=4096),
    ),
    ("Ollama", "the input length exceeds the context length", Overflow()),
]


@pytest.mark.parametrize(("server", "message", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_servers_wording_of_a_refusal_for_size_is_recognised(
    server: str, message: str, expected: Overflow
) -> None:
    assert parse_overflow(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "invalid 'messages[1].content': expected a string",
        "model 'llama3.2' not found, try pulling it first",
        "Incorrect API key provided",
        "max_tokens must be at least 1, got -186.",
    ],
)
def test_other_refusals_are_not_taken_for_a_context_overflow(message: str) -> None:
    assert parse_overflow(message) is None


def test_llamacpp_props_give_the_context_of_one_slot() -> None:
    props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2}
    served = served_from_llamacpp_props(props)
    assert served is not None and served.tokens == 2048
    assert "per slot" in served.source and "2 slot" in served.source
    assert served_from_llamacpp_props({"error": {"message": "Loading model"}}) is None


def test_model_listings_of_vllm_and_llamacpp() -> None:
    vllm = {"data": [{"id": "other", "max_model_len": 1}, {"id": "qwen", "max_model_len": 32768}]}
    served = served_from_openai_models(vllm, "qwen")
    assert served is not None and served.tokens == 32768 and "vLLM" in served.source
    llamacpp = {"data": [{"id": "/models/x.gguf", "meta": {"n_ctx": 2048, "n_ctx_train": 8192}}]}
    served = served_from_openai_models(llamacpp, "whatever the config says")
    assert served is not None and served.tokens == 2048  # the only model served
    assert served_from_openai_models({"data": [{"id": "gpt-4o"}]}, "gpt-4o") is None
    assert served_from_openai_models({"data": [{"id": "a"}, {"id": "b"}]}, "c") is None


def test_lmstudio_prefers_the_loaded_context() -> None:
    listing = {"data": [{"id": "qwen", "max_context_length": 32768, "loaded_context_length": 4096}]}
    served = served_from_lmstudio_models(listing, "qwen")
    assert served is not None and served.tokens == 4096


def test_ollama_uses_num_ctx_then_the_loaded_model_then_its_default() -> None:
    show = {"model_info": {"llama.context_length": 131072}, "parameters": "num_ctx 8192\n"}
    served = served_from_ollama(show, None, "llama3.2")
    assert served is not None and served.tokens == 8192
    show = {"model_info": {"llama.context_length": 131072}, "parameters": "temperature 0.7"}
    running = {"models": [{"name": "llama3.2:latest", "context_length": 16384}]}
    served = served_from_ollama(show, running, "llama3.2")
    assert served is not None and served.tokens == 16384
    served = served_from_ollama(show, {"models": []}, "llama3.2")
    assert served is not None and served.tokens == OLLAMA_DEFAULT_CONTEXT
    small = {"model_info": {"phi.context_length": 2048}}
    served = served_from_ollama(small, None, "phi")
    assert served is not None and served.tokens == 2048


@pytest.mark.parametrize("answer", [{"ok": True}, {"error": None}, {"model": "x", "size": 1}, {}])
def test_an_answer_not_of_ollamas_shape_is_not_taken_for_ollama(answer: object) -> None:
    assert served_from_ollama(answer, {"models": []}, "llama3.2") is None


async def test_a_server_that_answers_any_json_at_api_show_leaves_the_window_alone() -> None:
    # Issue 35 item 4: such a server capped the window at Ollama's 4,096 tokens.
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/show":
            return httpx.Response(200, json={"status": "ok", "uptime": 12})
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(404, json={"error": "not found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        served = await probe_served_window(http, "http://model.test/v1", "m", {})
    assert served is None


def test_the_smallest_window_wins_and_a_refusal_teaches_one() -> None:
    state = WindowState(8192)
    assert state.limit == 8192
    state.learn_overflow(Overflow(limit=2048, prompt_tokens=2500), estimate=3000)
    assert state.limit == 2048
    assert state.ratio == pytest.approx(2500 / 3000)
    # A refusal that says nothing: a little less than what was just sent.
    state = WindowState(8192)
    state.learn_overflow(Overflow(), estimate=5000)
    assert state.limit < state.count(5000) < 8192


def test_calibration_converges_and_ignores_implausible_counts() -> None:
    state = WindowState(4096)
    assert not state.calibrate(1000, 10)  # a fixed or cached-only count
    assert state.ratio == 1.0
    for _ in range(20):
        assert state.calibrate(1000, 760)
    assert state.ratio == pytest.approx(0.76, abs=0.01)
    assert state.count(1000) >= 760  # rounded up, with a margin
