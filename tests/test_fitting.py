"""Fitting a request into the context window (pure)."""

from __future__ import annotations

import random

import pytest

from ganglion.fitting import (
    MIN_KEPT_TOKENS,
    Budget,
    answer_reserve,
    clip_middle,
    fit_request,
)
from ganglion.tokens import estimate_message_tokens, estimate_tokens
from ganglion.transcript import ChatMessage, ToolCall


def _size(messages: list[ChatMessage], tools: int = 0) -> int:
    return sum(estimate_message_tokens(m) for m in messages) + tools


def test_a_request_that_fits_is_sent_untouched() -> None:
    messages = [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]
    fit = fit_request(messages, 10, Budget(window=2048, reserve=256))
    assert fit.fits and fit.messages == messages and fit.clips == ()


def test_a_huge_paste_keeps_its_beginning_and_end() -> None:
    paste = "BEGIN " + "x" * 60_000 + " END"
    messages = [
        ChatMessage("system", "s" * 600),
        ChatMessage("user", "earlier"),
        ChatMessage("assistant", "answer"),
        ChatMessage("user", paste),
    ]
    budget = Budget(window=2048, reserve=256, ratio=0.8)
    fit = fit_request(messages, 300, budget)
    assert fit.fits and fit.tokens <= budget.room
    assert [c.index for c in fit.clips] == [3]
    sent = fit.messages[3].content or ""
    assert sent.startswith("BEGIN ") and sent.endswith(" END") and "characters cut here" in sent
    assert fit.messages[:3] == messages[:3]  # the short ones stay whole


def test_the_largest_messages_are_cut_to_a_common_length() -> None:
    rng = random.Random(7)
    for _ in range(200):
        messages = [ChatMessage("system", "s" * rng.randint(0, 2000))]
        for index in range(rng.randint(1, 30)):
            role = ("user", "assistant")[index % 2]
            text = "é" * rng.randint(0, 8000) if rng.random() < 0.3 else "w" * rng.randint(0, 900)
            messages.append(ChatMessage(role, text))
        budget = Budget(
            window=rng.choice([1024, 2048, 4096]), reserve=256, ratio=rng.uniform(0.5, 1.5)
        )
        tools = rng.randint(0, 600)
        fit = fit_request(messages, tools, budget)
        if not fit.fits:
            # Only when even the shortest form of every message leaves no room.
            assert fit.fixed_tokens + budget.count(len(messages)) > budget.room
            continue
        assert budget.count(_size(fit.messages, tools)) <= budget.room
        assert fit.messages[0] == messages[0]
        kept = [estimate_tokens(m.content or "") for m in fit.messages]
        for clip in fit.clips:
            assert clip.kept >= MIN_KEPT_TOKENS - 1
            # No message left whole is longer than one that was cut.
            assert all(
                size <= clip.kept + 2
                for i, size in enumerate(kept)
                if i and i not in {c.index for c in fit.clips}
            )


def test_tool_calls_are_never_cut_and_a_system_prompt_too_large_is_reported() -> None:
    call = ChatMessage(
        "assistant", None, tool_calls=(ToolCall("c1", "shell", '{"command": "ls"}'),)
    )
    messages = [
        ChatMessage("system", "s" * 9000),
        call,
        ChatMessage("tool", "r" * 9000, tool_call_id="c1", name="shell"),
    ]
    fit = fit_request(messages, 0, Budget(window=2048, reserve=256))
    assert not fit.fits
    assert fit.fixed_tokens >= estimate_tokens("s" * 9000)
    messages[0] = ChatMessage("system", "short")
    fit = fit_request(messages, 0, Budget(window=2048, reserve=256))
    assert fit.fits and fit.messages[1] == call and [c.index for c in fit.clips] == [2]


@pytest.mark.parametrize("size", [0, 10, 500, 50_000])
def test_clip_middle_stays_within_its_limit(size: int) -> None:
    text = "ü" * size
    clipped = clip_middle(text, 100)
    assert estimate_tokens(clipped) <= max(100, estimate_tokens(text) if size < 200 else 100)
    if estimate_tokens(text) <= 100:
        assert clipped == text


def test_the_answer_keeps_room() -> None:
    assert answer_reserve(2048, None) == 256
    assert answer_reserve(131072, None) == 2048
    assert answer_reserve(4096, 1000) == 1000
    assert answer_reserve(2048, 4000) == 1024  # never more than half the window


def test_the_schema_estimate_is_the_json_lists_size_also_when_remembered() -> None:
    """`estimate_schema_tokens` remembers each schema's size; the figure stays the one
    of `json.dumps` of the whole list, for the same schemas again and for new ones."""
    import json

    from ganglion.tokens import estimate_schema_tokens, estimate_tokens

    schemas = [{"name": f"t{i}", "about": "é" * i, "args": [1, {"x": None}]} for i in range(5)]
    for n in range(len(schemas) + 1):
        for _ in range(2):
            expected = estimate_tokens(json.dumps(schemas[:n])) if n else 0
            assert estimate_schema_tokens(schemas[:n]) == expected
    changed = [dict(s, about="changed") for s in schemas]  # new objects, new sizes
    assert estimate_schema_tokens(changed) == estimate_tokens(json.dumps(changed))
