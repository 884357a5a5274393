"""Conversation titles: written by the model after the first answer, cleaned, counted as
usage source "titles", never over the owner's rename, asked at most once (restarts too),
and off with `web.generate_titles: false`."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
import trio
import trio.testing
from trio_websocket import WebSocketConnection

from ganglion.config import Config
from ganglion.datadir import CONVERSATION_DB
from ganglion.store import ConversationStore, FirstExchange, Migrations, schema
from ganglion.store.schema import migrations
from ganglion.titles import (
    TITLE_CHARS,
    TITLE_INSTRUCTIONS,
    TITLE_MAX_TOKENS,
    fallback_title,
    model_title,
)
from ganglion.transcript import Attachment, ChatMessage
from ganglion.web import frames
from tests.support.fakellm import FakeLLM, Hang, HTTPError, Reply, Step
from tests.support.web import WebDaemon, hello, next_frame, open_web_daemon, send, web_config

TAB = "web_7171717171717171"
TIMEOUT = 30


# -- the rules (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Trip to Lisbon", "Trip to Lisbon"),
        ('"Trip to Lisbon."', "Trip to Lisbon"),
        ("Title: **Trip** to `Lisbon`.", "Trip to Lisbon"),
        ("# Weekend plans\n\nMore text the model added", "Weekend plans"),
        ("> - [A link](https://example.org) to read", "A link to read"),
        ("<think>They ask about trains.</think>\nTrain times", "Train times"),
        ('{"title": "Budget review"}', "Budget review"),
    ],
)
def test_a_model_title_is_one_line_of_plain_text(answer: str, title: str) -> None:
    assert model_title(answer) == title


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n ",
        'CALL:set_reminder {"when": "tomorrow"}',
        '{"name": "set_reminder", "arguments": {}}',
        "/new",
        "***",
        "Sure! " + "Here is a long answer rather than a title for it, " * 4,
    ],
)
def test_what_is_no_title_is_not_used(answer: str) -> None:
    assert model_title(answer) is None


def test_a_title_is_at_most_sixty_characters_cut_at_a_word() -> None:
    title = model_title("Planning " + "a very long journey " * 5)
    assert title is not None and len(title) <= TITLE_CHARS == 60
    assert title.endswith("…") and not title.endswith(" …")
    assert fallback_title("x" * 200) == "x" * 59 + "…"


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("Markdown test:\n# Heading one\n## Heading two", "Markdown test"),
        ("# Heading one ## Heading two **bold**", "Heading one Heading two bold"),
        ('CALL:set_reminder {"when": "now"}\nRemind me to call Ana', "Remind me to call Ana"),
        ("/remind me to water the plants", "me to water the plants"),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("1. Buy [milk](https://shop.example) and eggs.", "Buy milk and eggs"),
        ("C# tips", "C# tips"),
    ],
)
def test_the_fallback_is_the_first_line_cleaned(message: str, title: str) -> None:
    assert fallback_title(message) == title


def test_a_message_with_nothing_to_name_it_by_has_no_fallback() -> None:
    assert fallback_title('CALL:x {}\n{"a": 1}\n---') is None


# -- the daemon ------------------------------------------------------------------------------


class Model:
    """The fake model's answers: title requests from `titles`, turns from `turns` (each
    "ok" when its queue is empty), so a test scripts each kind on its own."""

    def __init__(self, fake: FakeLLM) -> None:
        self.titles: deque[Step] = deque()
        self.turns: deque[Step] = deque()
        self.fake = fake
        fake.responder = self.answer

    def answer(self, body: dict[str, Any]) -> Step:
        queue = self.titles if is_title_request(body) else self.turns
        return queue.popleft() if queue else Reply("ok")

    def title_requests(self) -> list[dict[str, Any]]:
        return [body for body in self.fake.requests if is_title_request(body)]


def is_title_request(body: dict[str, Any]) -> bool:
    return bool(body["messages"]) and body["messages"][0]["content"] == TITLE_INSTRUCTIONS


def titles_on(tmp_path: Path, fake: FakeLLM, **web: Any) -> Config:
    return web_config(tmp_path, fake.base_url, web={"generate_titles": True, **web})


@asynccontextmanager
async def chat(config: Config) -> AsyncIterator[tuple[WebDaemon, WebSocketConnection]]:
    async with open_web_daemon(config) as web, web.socket() as ws:
        await hello(ws, TAB)
        yield web, ws


async def say(ws: WebSocketConnection, text: str, message_id: str) -> str:
    """Send `text` and wait for its answer; the answer's text."""
    await send(ws, text, message_id)
    reply = await next_frame(ws, "reply")
    return str(reply["text"])


async def rename(ws: WebSocketConnection, title: str) -> None:
    """Rename the conversation as its menu does; the list it answers with is read."""
    await ws.send_message(frames.rename(TAB, title))
    await next_frame(ws, "threads")


async def retitled(ws: WebSocketConnection) -> dict[str, Any]:
    """The next `thread_changed` that names a conversation again (a new conversation's
    'created' comes first)."""
    while (changed := await next_frame(ws, "thread_changed"))["change"] != "renamed":
        pass
    return changed


async def listed_title(ws: WebSocketConnection) -> str:
    await ws.send_message(frames.list_threads())
    listed = await next_frame(ws, "threads")
    return str(next(item["title"] for item in listed["items"] if item["thread_id"] == TAB))


def title_state(config: Config) -> tuple[str | None, str | None]:
    with sqlite3.connect(config.data_dir / CONVERSATION_DB) as db:
        row = db.execute(
            "SELECT title, title_state FROM threads WHERE thread_id = ?", (TAB,)
        ).fetchone()
    return row[0], row[1]


async def test_the_first_answer_names_the_conversation_in_every_tab(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    model = Model(fake_llm)
    model.turns.append(Reply("Take the 8:05 train from Santa Apolónia."))
    model.titles.append(Reply('"Train to Porto."'))
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (web, ws), web.socket() as other:
        await hello(other, "web_0f0f0f0f0f0f0f0f")
        with trio.fail_after(TIMEOUT):
            assert await say(ws, "# How do I get to Porto\nby train?", "m1") == (
                "Take the 8:05 train from Santa Apolónia."
            )
            for tab in (ws, other):  # every tab's list is told, whatever it follows
                changed = await retitled(tab)
                assert changed == {
                    "type": "thread_changed",
                    "thread_id": TAB,
                    "change": "renamed",
                }
            assert await listed_title(ws) == "Train to Porto"
    assert title_state(config) == ("Train to Porto", "generated")
    [request] = model.title_requests()
    assert "tools" not in request
    assert request["max_tokens"] == TITLE_MAX_TOKENS
    exchange = request["messages"][1]["content"]
    assert "How do I get to Porto" in exchange and "Santa Apolónia" in exchange


async def test_the_title_request_is_counted_under_titles(tmp_path: Path, fake_llm: FakeLLM) -> None:
    model = Model(fake_llm)
    model.titles.append(Reply("Train to Porto", usage=(120, 6)))
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (web, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "How do I get to Porto?", "m1")
            await retitled(ws)
        in_all, _ = await web.services.deps.meter.conversation(TAB)
    assert in_all["titles"].calls == 1
    assert (in_all["titles"].prompt, in_all["titles"].completion) == (120, 6)
    assert in_all["owner"].calls == 1


@pytest.mark.parametrize(
    "failure", [HTTPError(500), Reply("CALL:set_reminder {}"), Reply(""), Hang()]
)
async def test_without_a_title_from_the_model_the_first_line_stays(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock, failure: Step
) -> None:
    model = Model(fake_llm)
    model.titles.append(failure)
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "**Markdown test:**\n# Heading one\n## Heading two", "m1")
            await fake_llm.wait_for_requests(2)
        await trio.sleep(120)  # past the titler's time limit (the clock jumps)
        with trio.fail_after(TIMEOUT):
            assert await listed_title(ws) == "Markdown test"
    assert title_state(config) == ("Markdown test", "fallback")
    assert len(model.title_requests()) == 1


async def test_the_owners_rename_wins_over_a_title_that_lands_after_it(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock
) -> None:
    model = Model(fake_llm)
    gate = trio.Event()
    model.titles.append(Reply("Train to Porto", gate=gate))
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "How do I get to Porto?", "m1")
            await fake_llm.wait_for_requests(2)  # the title is being written
            await rename(ws, "Porto weekend")
            gate.set()
        await trio.sleep(120)  # the title has landed (the clock jumps once all is idle)
        assert title_state(config) == ("Train to Porto", "generated")
        with trio.fail_after(TIMEOUT):
            assert await listed_title(ws) == "Porto weekend"
            # Cleared, the rename gives way to the model's title.
            await rename(ws, "")
            assert await listed_title(ws) == "Train to Porto"
    assert title_state(config) == ("Train to Porto", "generated")


async def test_a_renamed_conversation_is_not_asked_about(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock
) -> None:
    model = Model(fake_llm)
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await send(ws, "How do I get to Porto?", "m1")
            await next_frame(ws, "accepted")
            await rename(ws, "Porto weekend")
            await next_frame(ws, "reply")
        await trio.sleep(120)
    assert model.title_requests() == []
    assert title_state(config)[1] is None


async def test_generate_titles_false_asks_for_no_title(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock
) -> None:
    model = Model(fake_llm)
    config = web_config(tmp_path, fake_llm.base_url, web={"generate_titles": False})
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "# How do I get to Porto?", "m1")
            await say(ws, "And back?", "m2")
        await trio.sleep(120)
        with trio.fail_after(TIMEOUT):
            assert await listed_title(ws) == "How do I get to Porto?"
    assert len(fake_llm.requests) == 2 and model.title_requests() == []
    assert title_state(config) == ("How do I get to Porto?", None)


async def test_the_next_turn_is_answered_while_the_title_is_written(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    model = Model(fake_llm)
    gate = trio.Event()
    model.titles.append(Reply("Train to Porto", gate=gate))
    model.turns.extend([Reply("By train."), Reply("Also by train.")])
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            assert await say(ws, "How do I get to Porto?", "m1") == "By train."
            await fake_llm.wait_for_requests(2)
            assert await say(ws, "And back?", "m2") == "Also by train."
            assert not gate.is_set() and title_state(config)[1] == "asked"
            gate.set()
            await retitled(ws)
    assert title_state(config) == ("Train to Porto", "generated")


async def test_a_title_cut_off_by_a_stop_is_not_asked_again(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.testing.MockClock
) -> None:
    model = Model(fake_llm)
    model.titles.append(Hang())
    config = titles_on(tmp_path, fake_llm)
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "How do I get to Porto?", "m1")
            await fake_llm.wait_for_requests(2)  # stopped while the model writes it
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "And back?", "m2")
        await trio.sleep(120)
        with trio.fail_after(TIMEOUT):
            assert await listed_title(ws) == "How do I get to Porto?"
    assert len(model.title_requests()) == 1
    assert title_state(config) == ("How do I get to Porto?", "asked")


async def test_a_conversation_never_named_is_named_at_its_next_answer(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    model = Model(fake_llm)
    model.titles.append(Reply("Train to Porto"))
    config = titles_on(tmp_path, fake_llm)
    off = web_config(tmp_path, fake_llm.base_url, web={"generate_titles": False})
    async with chat(off) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "How do I get to Porto?", "m1")
    async with chat(config) as (_, ws):
        with trio.fail_after(TIMEOUT):
            await say(ws, "And back?", "m2")
            await retitled(ws)
            assert await listed_title(ws) == "Train to Porto"
    [request] = model.title_requests()
    assert "How do I get to Porto?" in request["messages"][1]["content"]


# -- the store -------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ConversationStore]:
    store = await ConversationStore.open(tmp_path / CONVERSATION_DB)
    try:
        yield store
    finally:
        await store.aclose()


async def converse(store: ConversationStore, text: str, answer: str, turn_id: str) -> None:
    await store.turns.load_thread(TAB, interface="web")
    message = ChatMessage("user", text)
    turn, _ = await store.turns.queue_turn(TAB, message, source="user", turn_id=turn_id)
    await store.turns.start_turn(turn.turn_id)
    await store.turns.finish_turn(
        turn.turn_id, state="done", final=ChatMessage("assistant", answer)
    )


async def test_a_conversation_is_claimed_once_from_its_first_exchange(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, "How do I get to Porto?", "By train.", "t1")
        await converse(store, "And back?", "Also by train.", "t2")
        claimed = await store.titles.claim(TAB)
        assert claimed == FirstExchange(TAB, "How do I get to Porto?", "By train.")
        assert await store.titles.claim(TAB) is None  # asked already: never twice
        assert await store.titles.settle(TAB, "Train to Porto") == "Train to Porto"
        assert await store.titles.claim(TAB) is None


async def test_editing_the_first_message_names_the_conversation_again(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, "How do I get to Porto?", "By train.", "t1")
        await store.titles.claim(TAB)
        await store.titles.settle(TAB, "Train to Porto")
        await store.turns.rewind_turn(TAB, "t1", new_turn_id="t2", text="# And to Lisbon?")
        assert (await store.library.thread_summary(TAB)).title == "And to Lisbon?"  # type: ignore[union-attr]
        await store.turns.start_turn("t2")
        await store.turns.finish_turn("t2", state="done", final=ChatMessage("assistant", "Bus."))
        claimed = await store.titles.claim(TAB)
        assert claimed == FirstExchange(TAB, "# And to Lisbon?", "Bus.")


async def test_a_title_that_lands_after_a_delete_or_an_edit_is_dropped(
    store: ConversationStore,
) -> None:
    with trio.fail_after(TIMEOUT):
        await converse(store, "How do I get to Porto?", "By train.", "t1")
        await store.titles.claim(TAB)
        await store.turns.rewind_turn(TAB, "t1", new_turn_id="t2", text="And to Lisbon?")
        assert await store.titles.settle(TAB, "Train to Porto") is None
        assert (await store.library.thread_summary(TAB)).title == "And to Lisbon?"  # type: ignore[union-attr]
        await store.library.delete_thread(TAB)
        assert await store.titles.settle(TAB, "Train to Porto") is None
        assert await store.titles.claim(TAB) is None


def test_the_conversations_before_titles_keep_theirs_cleaned_and_are_never_asked_about(
    tmp_path: Path,
) -> None:
    path = tmp_path / CONVERSATION_DB
    before = Migrations("conversation")
    for name in migrations.names[: migrations.names.index("generated_titles")]:
        before.migration(getattr(schema, name))
    db = sqlite_utils.Database(path)
    before.apply(db)
    db.execute(
        "INSERT INTO threads (thread_id, interface, created_at, epoch, title, updated_at) "
        "VALUES (?, 'web', 0, 0, ?, 1)",
        (TAB, "Markdown test: # Heading one ## Heading two **bold** and a long tail of words"),
    )
    db.conn.commit()
    db.close()

    async def reopened() -> None:
        store = await ConversationStore.open(path)
        try:
            [listed] = await store.library.list_threads("web")
            assert listed.title == "Markdown test: Heading one Heading two bold and a long…"
            assert len(listed.title) <= TITLE_CHARS
            assert await store.titles.claim(TAB) is None
        finally:
            await store.aclose()

    trio.run(reopened)


async def test_a_first_message_of_files_alone_is_named_by_their_names(
    store: ConversationStore,
) -> None:
    report = Attachment("inbox/web/report.pdf", "report.pdf", "application/pdf", 2048)
    with trio.fail_after(TIMEOUT):
        await store.turns.load_thread(TAB, interface="web")
        message = ChatMessage("user", "", attachments=(report,))
        turn, _ = await store.turns.queue_turn(TAB, message, source="user", turn_id="t1")
        await store.turns.start_turn(turn.turn_id)
        await store.turns.finish_turn("t1", state="done", final=ChatMessage("assistant", "Read."))
        assert (await store.library.thread_summary(TAB)).title == "New chat"  # type: ignore[union-attr]
        claimed = await store.titles.claim(TAB)
        assert claimed == FirstExchange(TAB, "(sent report.pdf)", "Read.")
