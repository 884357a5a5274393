"""Compaction: the pure planning and rendering, then automatic and forced compaction in
the running daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.compaction import (
    TRUNCATED,
    compaction_threshold,
    needs_compaction,
    plan_compaction,
    render_for_summary,
    summary_message,
    summary_request,
)
from ganglion.tokens import estimate_message_tokens, estimate_tokens
from ganglion.transcript import ChatMessage, ToolCall
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply


def test_threshold_is_absolute_or_a_fraction_of_the_window() -> None:
    assert compaction_threshold(5000, 0.75, 8192) == 5000
    assert compaction_threshold(None, 0.75, 8192) == 6144
    assert compaction_threshold(None, 0.5, 1001) == 500
    assert needs_compaction(6145, 6144) and not needs_compaction(6144, 6144)


def test_token_estimate_is_conservative() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello world") >= 11 / 4
    assert estimate_tokens("日本語") == 3  # 9 bytes: a token per character
    message = ChatMessage("assistant", None, (ToolCall("c", "shell", '{"command": "ls"}'),))
    assert estimate_message_tokens(message) > estimate_tokens('{"command": "ls"}')
    assert estimate_message_tokens(message) > estimate_message_tokens(ChatMessage("assistant"))


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


def group(kind: int, n: int) -> list[ChatMessage]:
    if kind == 0:
        return [user(f"question {n} " + "words " * (n % 7))]
    if kind == 1:
        return [assistant(f"answer {n} " + "é" * (n % 11))]
    calls = tuple(ToolCall(f"c{n}_{i}", "shell", f'{{"n": {i}}}') for i in range(1 + n % 3))
    return [ChatMessage("assistant", None if n % 2 else "let me look", calls)] + [
        ChatMessage("tool", "out " * (n % 5), tool_call_id=c.id, name="shell") for c in calls
    ]


histories = st.lists(st.integers(0, 2), min_size=1, max_size=40).map(
    lambda kinds: [m for n, k in enumerate(kinds) for m in group(k, n)]
)


def splits_a_tool_call(history: list[ChatMessage], cut: int) -> bool:
    kept, summarised = history[cut:], history[:cut]
    kept_calls = {c.id for m in kept for c in m.tool_calls}
    summarised_results = {m.tool_call_id for m in summarised if m.role == "tool"}
    return any(m.role == "tool" and m.tool_call_id not in kept_calls for m in kept) or any(
        c.id not in summarised_results for m in summarised for c in m.tool_calls
    )


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(0, 10), st.integers(20, 200), st.booleans())
def test_plans_never_separate_a_tool_call_from_its_results(
    history: list[ChatMessage], keep: int, budget: int, force: bool
) -> None:
    plan = plan_compaction(history, keep_recent=keep, chunk_budget_tokens=budget, force=force)
    if plan is None:
        if force:  # only when there is nothing before the tail that can be cut off cleanly
            limit = len(history) - keep
            assert all(splits_a_tool_call(history, cut) for cut in range(1, limit + 1))
        return
    assert 0 < plan.keep_from <= len(history) - keep
    assert not splits_a_tool_call(history, plan.keep_from)
    assert [i for chunk in plan.chunks for i in chunk] == list(range(plan.keep_from))
    for chunk in plan.chunks:
        cost = sum(estimate_message_tokens(history[i]) for i in chunk)
        assert cost <= budget or len(chunk) == 1


@settings(max_examples=200, deadline=None)
@given(histories, st.integers(20, 400))
def test_a_chunk_within_budget_renders_whole_and_within_budget(
    history: list[ChatMessage], budget: int
) -> None:
    plan = plan_compaction(history, keep_recent=0, chunk_budget_tokens=budget, force=True)
    assert plan is not None  # keep nothing: the end of a history is always a clean cut
    for chunk in plan.chunks:
        text = render_for_summary([history[i] for i in chunk], max_tokens=budget)
        assert estimate_tokens(text) <= budget
        if len(chunk) > 1:
            assert TRUNCATED not in text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=12), st.integers(0, 500))
def test_a_render_always_fits_and_keeps_every_message(sizes: list[int], extra: int) -> None:
    messages = [user(f"m{i} " + "x" * size) for i, size in enumerate(sizes)]
    max_tokens = 12 * len(messages) + extra
    text = render_for_summary(messages, max_tokens=max_tokens)
    assert estimate_tokens(text) <= max_tokens
    for i in range(len(messages)):
        assert f"user: m{i} " in text  # at least 34 bytes each: the head of every message
    assert text.count("\n\n") == len(messages) - 1


def test_the_cut_prefers_the_start_of_a_user_turn() -> None:
    history = [user("q1"), assistant("a1"), user("q2"), assistant("a2.1"), assistant("a2.2")]
    plan = plan_compaction(history, keep_recent=2, chunk_budget_tokens=1000)
    assert plan is not None and plan.keep_from == 2  # not 3: q2 stays with its answers


def test_the_cut_does_not_give_up_most_of_the_history_for_a_user_turn() -> None:
    long_turn = [user("do the big job")] + [assistant(f"step {i}") for i in range(10)]
    plan = plan_compaction(long_turn, keep_recent=2, chunk_budget_tokens=1000)
    assert plan is not None and plan.keep_from == 9


def test_the_cut_moves_back_over_tool_results() -> None:
    calls = (ToolCall("a", "ls", "{}"), ToolCall("b", "cat", "{}"))
    history = [
        user("q1"),
        assistant("a1"),
        assistant("working"),
        ChatMessage("assistant", None, calls),
        ChatMessage("tool", "x", tool_call_id="a", name="ls"),
        ChatMessage("tool", "y", tool_call_id="b", name="cat"),
        assistant("done"),
    ]
    plan = plan_compaction(history, keep_recent=2, chunk_budget_tokens=1000)
    assert plan is not None and plan.keep_from == 3


def test_keep_recent_zero_summarises_everything() -> None:
    history = [user("q"), assistant("a"), user("q2"), assistant("a2")]
    plan = plan_compaction(history, keep_recent=0, chunk_budget_tokens=1000)
    assert plan is not None and plan.keep_from == 4 and plan.chunks == ((0, 1, 2, 3),)


def test_chunks_split_at_the_budget() -> None:
    history = [user("x" * 300) for _ in range(6)]  # 108 tokens each
    plan = plan_compaction(history, keep_recent=0, chunk_budget_tokens=250)
    assert plan is not None and plan.chunks == ((0, 1), (2, 3), (4, 5))


def test_nothing_to_summarise_in_a_short_history() -> None:
    history = [user("hi"), assistant("hello")]
    assert plan_compaction(history, keep_recent=8, chunk_budget_tokens=1000) is None
    assert plan_compaction(history, keep_recent=1, chunk_budget_tokens=1000) is None


def test_force_summarises_even_a_short_history() -> None:
    history = [user("a"), assistant("b"), user("c")]
    plan = plan_compaction(history, keep_recent=1, chunk_budget_tokens=1000, force=True)
    assert plan is not None and plan.keep_from == 2
    tiny = [user("a"), assistant("b")]
    plan = plan_compaction(tiny, keep_recent=1, chunk_budget_tokens=1000, force=True)
    assert plan is not None and plan.keep_from == 1


def test_force_finds_nothing_when_the_tail_is_everything() -> None:
    history = [user("a"), assistant("b")]
    assert plan_compaction(history, keep_recent=2, chunk_budget_tokens=100, force=True) is None


def test_the_transcript_names_speakers_and_tools() -> None:
    messages = [
        user("list my files"),
        ChatMessage("assistant", None, (ToolCall("c1", "shell", '{"command": "ls"}'),)),
        ChatMessage("tool", "notes.txt", tool_call_id="c1", name="shell"),
        assistant("You have notes.txt."),
    ]
    assert render_for_summary(messages, max_tokens=1000) == (
        "user: list my files\n\n"
        'assistant called shell({"command": "ls"})\n\n'
        "tool shell result: notes.txt\n\n"
        "assistant: You have notes.txt."
    )


def test_an_oversize_message_is_truncated_with_a_marker_never_dropped() -> None:
    messages = [user("short"), ChatMessage("tool", "y" * 30_000, name="cat"), user("end")]
    text = render_for_summary(messages, max_tokens=1000)
    assert "user: short" in text
    assert "user: end" in text
    assert "tool cat result: yyy" in text
    assert text.count(TRUNCATED) == 1
    assert estimate_tokens(text) <= 1000
    assert estimate_tokens(text) > 990  # the room is used, not wasted


def test_truncation_never_splits_a_character() -> None:
    text = render_for_summary([user("é" * 5000)], max_tokens=100)
    assert "\ufffd" not in text and text.endswith(TRUNCATED)
    assert estimate_tokens(text) <= 100


def test_summary_request_merges_the_previous_summary() -> None:
    request = summary_request("older facts", "user: new facts")
    assert [m.role for m in request] == ["system", "user"]
    instructions = request[0].content or ""
    for word in ("facts", "decisions", "open tasks", "names", "numbers", "preferences", "merge"):
        assert word in instructions
    assert "older facts" in (request[1].content or "")
    assert "user: new facts" in (request[1].content or "")
    assert "(none)" in (summary_request(None, "t")[1].content or "")


def test_the_summary_stands_in_as_a_system_message() -> None:
    message = summary_message("The owner is Ada.")
    assert message.role == "system"
    assert message.content == (
        "Summary of the earlier part of this conversation:\nThe owner is Ada."
    )


WEB = "web_dddddddddddddddd"


async def test_long_threads_are_compacted_automatically(tmp_path: Path, fake_llm: FakeLLM) -> None:
    long = "x" * 600
    fake_llm.script(
        Reply("first " + long),
        Reply("second " + long),
        Reply("SUMMARY: the user asked twice about x."),
        Reply("third"),
    )
    config = daemon_config(
        tmp_path,
        fake_llm.base_url,
        compaction={"threshold_tokens": 1200, "keep_recent_messages": 2},
    )
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "one " + long)
        await daemon.collector.final(WEB)
        await daemon.say(WEB, "two " + long)
        await daemon.collector.final(WEB, 2)
        await daemon.say(WEB, "three")
        await daemon.collector.final(WEB, 3)
        info = await daemon.info(WEB)
    assert info.has_summary
    summary_request = fake_llm.requests[2]["messages"]
    assert "running summary" in summary_request[0]["content"]
    assert "one x" in summary_request[1]["content"]
    third = fake_llm.requests[3]["messages"]
    assert third[1]["content"].endswith("SUMMARY: the user asked twice about x.")
    assert all(not (m["content"] or "").startswith("one ") for m in third)
    assert third[-1]["content"] == "three"
    with sqlite3.connect(tmp_path / "conversation.db") as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (6,)


async def test_compact_command_forces_a_summary(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a"), Reply("b"), Reply("the summary"))
    config = daemon_config(tmp_path, fake_llm.base_url, compaction={"keep_recent_messages": 2})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "/compact")
        assert await daemon.collector.notice(WEB) == "Nothing to compact yet."
        for text in ("q1", "q2"):
            await daemon.say(WEB, text)
        await daemon.collector.final(WEB, 2)
        await daemon.say(WEB, "/compact")
        notice = await daemon.collector.notice(WEB, 2)
    assert notice == "Compacted: 2 older message(s) summarised, 2 kept verbatim."
