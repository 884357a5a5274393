from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.chat import ChatMessage, ToolCall
from ganglion.compaction import (
    TRUNCATED,
    compaction_threshold,
    needs_compaction,
    plan_compaction,
    render_for_summary,
    summary_request,
)
from ganglion.tokens import estimate_message_tokens, estimate_tokens


def test_threshold_is_absolute_or_a_fraction_of_the_window() -> None:
    assert compaction_threshold(5000, 0.75, 8192) == 5000
    assert compaction_threshold(None, 0.75, 8192) == 6144
    assert needs_compaction(6145, 6144) and not needs_compaction(6144, 6144)


def test_token_estimate_is_conservative() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello world") >= 11 / 4
    message = ChatMessage("assistant", None, (ToolCall("c", "shell", '{"command": "ls"}'),))
    assert estimate_message_tokens(message) > estimate_tokens('{"command": "ls"}')


def group(kind: int, n: int) -> list[ChatMessage]:
    if kind == 0:
        return [ChatMessage("user", f"question {n} " + "words " * (n % 7))]
    if kind == 1:
        return [ChatMessage("assistant", f"answer {n}")]
    calls = tuple(ToolCall(f"c{n}_{i}", "shell", "{}") for i in range(1 + n % 3))
    return [ChatMessage("assistant", None, calls)] + [
        ChatMessage("tool", "out " * (n % 5), tool_call_id=c.id, name="shell") for c in calls
    ]


histories = st.lists(st.integers(0, 2), min_size=1, max_size=40).map(
    lambda kinds: [m for n, k in enumerate(kinds) for m in group(k, n)]
)


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(0, 10), st.integers(20, 200), st.booleans())
def test_plans_never_separate_a_tool_call_from_its_results(
    history: list[ChatMessage], keep: int, budget: int, force: bool
) -> None:
    plan = plan_compaction(history, keep_recent=keep, chunk_budget_tokens=budget, force=force)
    if plan is None:
        return
    kept, summarised = history[plan.keep_from :], history[: plan.keep_from]
    assert len(kept) >= keep
    assert not kept or kept[0].role != "tool"
    kept_call_ids = {c.id for m in kept for c in m.tool_calls}
    assert all(m.tool_call_id in kept_call_ids for m in kept if m.role == "tool")
    summarised_results = {m.tool_call_id for m in summarised if m.role == "tool"}
    assert all(c.id in summarised_results for m in summarised for c in m.tool_calls)
    assert [i for chunk in plan.chunks for i in chunk] == list(range(plan.keep_from))
    for chunk in plan.chunks:
        cost = sum(estimate_message_tokens(history[i]) for i in chunk)
        assert cost <= budget or len(chunk) == 1


def test_nothing_to_summarise_in_a_short_history() -> None:
    history = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]
    assert plan_compaction(history, keep_recent=8, chunk_budget_tokens=1000) is None


def test_force_summarises_even_a_short_history() -> None:
    history = [ChatMessage("user", "a"), ChatMessage("assistant", "b"), ChatMessage("user", "c")]
    plan = plan_compaction(history, keep_recent=1, chunk_budget_tokens=1000, force=True)
    assert plan is not None and plan.keep_from == 2


def test_an_oversize_message_is_truncated_with_a_marker_never_dropped() -> None:
    messages = [ChatMessage("user", "short"), ChatMessage("tool", "y" * 30_000, name="cat")]
    text = render_for_summary(messages, max_tokens=1000)
    assert "user: short" in text
    assert "tool cat result: yyy" in text
    assert TRUNCATED in text
    assert estimate_tokens(text) <= 1000


def test_summary_request_merges_the_previous_summary() -> None:
    request = summary_request("older facts", "user: new facts")
    assert request[0].role == "system"
    assert "older facts" in (request[1].content or "")
    assert "user: new facts" in (request[1].content or "")
